/* @bruin
name: demo.hello
type: duckdb.sql
materialization:
  type: table
@bruin */

SELECT 'materialized from Vault' AS greeting
