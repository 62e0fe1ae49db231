"""Files: the component (`files`), its PostgreSQL database (`database`) and the schema migration run
during a deploy (`migration`)."""
