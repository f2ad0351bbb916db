"""Helpers shared by the test modules. A test module imports from here (and gets its
fixtures from `tests/conftest.py`), never from another test module.

- `servers`: fresh databases, the in-process server on a thread, one requiring mTLS
- `world`: an isolated organization per test, its people and unique ids
- `errors`: what a failed call answered; `expect_error`
- `content`: artifact versions, labs, registries, grants, links, aliases and event
  lists, made and read through the API
- `rows`: straight to the session server's database (set-up, stored events)
- `services`: every RPC of the contract, from the descriptors
- `unit_of_work`: whether a statement runs in a servicer's unit of work
- `files`: the suite's blob store, uploads, manifest entries and downloads of bytes
- `legacy_teams`: legacy Model Registries built and read through the API
- `migrations`: starting and following migrations (in-process and server processes)
- `processes`: `registry-server` as a child process, and the processes it starts
- `cli`: the `registry` command as a subprocess (`Cli`), its exit codes
- `seeded_teams`: legacy registries inserted straight into a database, and dumps that
  compare a migration's target with its source
- `ledger`: what clients sent and what was acknowledged, under interrupted traffic
- `invariants`: the invariants every database's collections hold
- `webhooks`: a webhook receiver on 127.0.0.1
- `certs`: a CA and certificates made in the test
- `pg_cluster`: a private PostgreSQL cluster a test may stop and restart
"""
