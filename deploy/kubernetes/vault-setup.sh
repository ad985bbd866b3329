#!/usr/bin/env bash
# One-time Vault (or OpenBao) setup for bruin-materialize in Kubernetes: a read-only policy on the
# connection secrets, the Kubernetes auth method, and a role that gives that policy to the
# bruin-materialize service account (deploy/kubernetes/base/serviceaccount.yaml). Idempotent: run it
# again after changing a setting. Run it with an admin token in VAULT_TOKEN (BAO_TOKEN for bao).
#
#   MOUNT=secret SECRET_PATH=bruin/production NAMESPACE=data bash deploy/kubernetes/vault-setup.sh
#
# Settings (environment, defaults in brackets):
#   VAULT_CLI                 vault or bao [vault]
#   MOUNT                     KV engine mount, BRUIN_VAULT_MOUNT_PATH [secret]
#   SECRET_PATH               folder holding one secret per connection, BRUIN_VAULT_PATH [bruin/production]
#   KV_VERSION                1 or 2 [2]
#   NAMESPACE                 Kubernetes namespace of the service account [default]
#   SERVICE_ACCOUNT           [bruin-materialize]
#   ROLE                      Vault role, BRUIN_VAULT_ROLE [bruin-materialize]
#   POLICY                    Vault policy name [bruin-materialize-read]
#   K8S_AUTH_MOUNT            auth mount, BRUIN_VAULT_K8S_AUTH_MOUNT [kubernetes]
#   AUDIENCE                  audience of the pods' projected token [vault]
#   TOKEN_TTL                 lifetime of the Vault token a login gets [10m]
#   KUBERNETES_HOST           API server as Vault reaches it [https://kubernetes.default.svc:443]
#   VAULT_IN_CLUSTER          true: Vault runs as a pod of this cluster and uses its own service
#                             account's CA and token; false: set the two below [true]
#   KUBERNETES_CA_CERT_FILE   the API server's CA (PEM), when Vault runs outside the cluster
#   TOKEN_REVIEWER_JWT_FILE   a token allowed to create TokenReviews, when Vault runs outside the
#                             cluster (without it each pod's own token must be allowed to)
#   SKIP_AUTH_CONFIG=1        leave an existing auth/K8S_AUTH_MOUNT/config alone
set -euo pipefail

VAULT_CLI=${VAULT_CLI:-vault}
MOUNT=${MOUNT:-secret}
SECRET_PATH=${SECRET_PATH:-bruin/production}
KV_VERSION=${KV_VERSION:-2}
NAMESPACE=${NAMESPACE:-default}
SERVICE_ACCOUNT=${SERVICE_ACCOUNT:-bruin-materialize}
ROLE=${ROLE:-bruin-materialize}
POLICY=${POLICY:-bruin-materialize-read}
K8S_AUTH_MOUNT=${K8S_AUTH_MOUNT:-kubernetes}
AUDIENCE=${AUDIENCE:-vault}
TOKEN_TTL=${TOKEN_TTL:-10m}
KUBERNETES_HOST=${KUBERNETES_HOST:-https://kubernetes.default.svc:443}
VAULT_IN_CLUSTER=${VAULT_IN_CLUSTER:-true}

# Vault paths have no leading or trailing slashes.
MOUNT=${MOUNT#/}; MOUNT=${MOUNT%/}
SECRET_PATH=${SECRET_PATH#/}; SECRET_PATH=${SECRET_PATH%/}
K8S_AUTH_MOUNT=${K8S_AUTH_MOUNT#/}; K8S_AUTH_MOUNT=${K8S_AUTH_MOUNT%/}

vault_cli() { "$VAULT_CLI" "$@"; }

# bruin-materialize lists the folder (and, with --recursive, its subfolders) and reads every
# secret in it. bruin's own Vault backend needs only the read rule.
policy_kv2() {
  cat <<HCL
path "${MOUNT}/metadata/${SECRET_PATH}" {
  capabilities = ["list"]
}
path "${MOUNT}/metadata/${SECRET_PATH}/*" {
  capabilities = ["list"]
}
path "${MOUNT}/data/${SECRET_PATH}/*" {
  capabilities = ["read"]
}
HCL
}

policy_kv1() {
  cat <<HCL
path "${MOUNT}/${SECRET_PATH}" {
  capabilities = ["list"]
}
path "${MOUNT}/${SECRET_PATH}/*" {
  capabilities = ["read", "list"]
}
HCL
}

write_policy() {
  case "$KV_VERSION" in
    1) policy_kv1 | vault_cli policy write "$POLICY" - ;;
    2) policy_kv2 | vault_cli policy write "$POLICY" - ;;
    *) echo "vault-setup: KV_VERSION must be 1 or 2" >&2; exit 2 ;;
  esac
}

enable_kubernetes_auth() {
  if vault_cli read "sys/auth/${K8S_AUTH_MOUNT}" >/dev/null 2>&1; then
    echo "auth method ${K8S_AUTH_MOUNT}/ already enabled"
  else
    vault_cli auth enable -path="$K8S_AUTH_MOUNT" kubernetes
  fi
}

configure_kubernetes_auth() {
  if [ "${SKIP_AUTH_CONFIG:-}" = 1 ]; then
    return
  fi
  local args=("kubernetes_host=${KUBERNETES_HOST}")
  case "$VAULT_IN_CLUSTER" in
    true) args+=("disable_local_ca_jwt=false") ;;
    false)
      if [ -z "${KUBERNETES_CA_CERT_FILE:-}" ]; then
        echo "vault-setup: VAULT_IN_CLUSTER=false needs KUBERNETES_CA_CERT_FILE" >&2
        exit 2
      fi
      args+=("disable_local_ca_jwt=true") ;;
    *) echo "vault-setup: VAULT_IN_CLUSTER must be true or false" >&2; exit 2 ;;
  esac
  if [ -n "${KUBERNETES_CA_CERT_FILE:-}" ]; then
    args+=("kubernetes_ca_cert=@${KUBERNETES_CA_CERT_FILE}")
  fi
  if [ -n "${TOKEN_REVIEWER_JWT_FILE:-}" ]; then
    args+=("token_reviewer_jwt=@${TOKEN_REVIEWER_JWT_FILE}")
  fi
  vault_cli write "auth/${K8S_AUTH_MOUNT}/config" "${args[@]}"
}

# The role: only this service account in this namespace, presenting a token made for Vault.
write_role() {
  vault_cli write "auth/${K8S_AUTH_MOUNT}/role/${ROLE}" \
    bound_service_account_names="$SERVICE_ACCOUNT" \
    bound_service_account_namespaces="$NAMESPACE" \
    audience="$AUDIENCE" \
    token_policies="$POLICY" \
    token_ttl="$TOKEN_TTL" \
    token_max_ttl="$TOKEN_TTL"
}

write_policy
enable_kubernetes_auth
configure_kubernetes_auth
write_role
echo "done: role ${ROLE} at auth/${K8S_AUTH_MOUNT} gives ${NAMESPACE}/${SERVICE_ACCOUNT} read access to ${MOUNT}/${SECRET_PATH} (KV v${KV_VERSION})"
