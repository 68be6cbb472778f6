"""Shared basics every stage uses: config, table schemas, atomic io, image reading, the ledger, code versions."""
