"""What runs beside the servicers: the SQLite write child and the changes it runs
(`write_child`, `changes`), the migration runner and its process, and pacing."""
