"""The statements of the hot use cases, one module per domain, each a `storage.sql.Query`
built once per dialect: `registries` (a registry with the caller's granted role),
`resolve` (every path form), `versions` (collection versions, pages, alias holders),
`links` (link and alias writes), `events` and `requests` (the outbox and idempotency
rows every write shares), `migrations` (a migration's snapshot). Statements that can
fail in several ways join outward, so that one row tells which part was missing."""
