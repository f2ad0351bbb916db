"""Migration of legacy team Model Registries into the Registry (SPEC section 4).

A migration is a state machine persisted in `migrations` / `migration_teams`, worked
by a runner (`workers.migration_runner.run_migrations`) in bounded steps, each its own short
transaction, so a killed server resumes where it stopped and another replica can take
over once the lease expires:

    StartMigration   one transaction: the migration, its teams with frozen target names,
                     `active_team_migrations` claims, legacy registries READ_ONLY.
    set-up (teams)   the RESTRICTED registries, their members, one collection per
                     registered model, for teams with up to `batch_size` collections
                     together (set-based; a registry is usable from here on).
    copy (batch)     the next `batch_size` versions of the running teams by
                     registered_model_versions.id after the cursor: one INSERT ... SELECT
                     for the versions, one for their aliases, driven by the window's rows
                     (a primary-key range), the cursor moved in the same transaction.
    verify (teams)   set-based comparisons of whole teams (up to VERIFY_GROUP_VERSIONS
                     versions together) in a read transaction (no locks), with statements
                     built once; the result is recorded in a short write.
    switch           one transaction: redirects (all checked set-based), legacy MIGRATED,
                     SUCCEEDED; the shared resolver re-checks a sample of legacy paths
                     before it commits.
    undo (cancel / rollback)
                     asked for with a report of what goes back and what has no legacy
                     equivalent (refused unless forced); the registries refuse writes from
                     then on (`registry_freeze`). One step carries every change made in
                     them back into the legacy registries (`carry_back`), then redirects
                     off, links deleted in bounded chunks, then the registries; the legacy
                     registry is WRITABLE again, as it was plus those changes.

Every step first renews the lease with `UPDATE migrations ... WHERE lease_owner = me`;
that row lock serializes steps on PostgreSQL, and a replica that lost its lease stops.
The runner's Python work per step is a few statements, so it leaves the interpreter to
the calls being served (see `common.let_others_run` for the parts that are not).

The modules, a phase each but for the first two; each imports only modules listed
above it:

    common          states, names, the lease, team rows, state changes and their events
    member_access   each member's mapped registry role; planned access changes
    plan            PlanMigration's dry run (StartMigration reuses its scope and counts)
    carry_back      what an undo writes back into the legacy registries, what it loses
    undo            the undo step: carry-back, redirects off, links and registries gone
    lifecycle       StartMigration; Get/List/WatchMigration's views; cancel and rollback
                    requests
    setup           a group of teams' registries, team members and collections
    copy            a batch of versions and aliases, and the end of the copy
    verify          the set-based comparison of a group of teams
    switch          redirects, MIGRATED and SUCCEEDED, checked by the resolver
    steps           the runner's side: claim a migration, run its next step, fail it

Callers import what they use from the module that holds it; this package re-exports
nothing.
"""
