"""What a replica runs besides answering calls. `api/server.py` starts these from one
list (`BACKGROUND`) and stops them with the server:

    commit_listener    PostgreSQL's LISTEN connection (empties the kept replies)
    event_hub          wakes WatchEvents streams (this process's commits, a poller)
    webhook_delivery   schedules, claims, sends and retries webhook deliveries
    migration_runner   works legacy migrations, on a thread or in a child process
                       (`runner_process`), paced by the server's load (`pacing`)
    retention          deletes old events, request_id answers and deliveries

and the write child that runs LinkArtifactVersion and AddAlias (`write_child`,
running the changes of `changes`).
"""
