"""Services powergate fronts or advises (LightRAG, Postgres + pgvector): separate rooms beside the gateway."""
