#!/usr/bin/env bash
# Regenerates migrations/versions/0001 from the models. Only valid while no
# release has shipped: afterwards add new revisions with `alembic revision`.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
rm -f server/registry_server/migrations/versions/0001_*.py
.venv/bin/python - "$tmp" <<'PY'
import sys
from alembic import command
from registry_server.storage.migrate import alembic_config
command.revision(alembic_config(f"sqlite:///{sys.argv[1]}/a.db"), message="initial schema", autogenerate=True, rev_id="0001")
PY
f=$(ls server/registry_server/migrations/versions/0001_*.py)
sed -i 's/astext_type=Text()/astext_type=sa.Text()/g; s/^Create Date: .*/Create Date: 2026-11-26/' "$f"
.venv/bin/ruff format -q "$f"
rm -rf "$tmp"
