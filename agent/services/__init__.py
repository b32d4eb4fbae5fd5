"""Services powergate fronts or advises (LightRAG, Postgres): separate rooms that use the gateway's parts."""
