"""bruin-materialize: Vault secrets into a checked, ephemeral bruin config, then bruin."""

__version__ = "0.1.0"
