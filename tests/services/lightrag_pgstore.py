"""Runs inside LightRAG's own venv (tests/reallightrag): LightRAG's PostgreSQL vector
storage (PGVectorStorage, lightrag/kg/postgres_impl.py) against the test Postgres.

    python lightrag_pgstore.py fill N      create LightRAG's tables and index, upsert N chunks
                                           in two workspaces (LightRAG's own DDL and SQL)
    python lightrag_pgstore.py query K     LightRAG's own chunk query (top_k=K) in workspace
                                           "alpha"; prints how many chunks came back

Connection settings come from LightRAG's POSTGRES_* environment variables. The embedding
function is deterministic (no model): each chunk's vector depends only on its number.
Prints one JSON line on stdout.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

DIM = 128
TOPICS = 97


SUBTOPICS = 20


def _gauss(seed: int) -> list[float]:
    rnd = random.Random(seed)
    return [rnd.gauss(0.0, 1.0) for _ in range(DIM)]


def vector(n: int) -> list[float]:
    """A chunk's embedding: one common direction, its topic, its sub-topic (the document's
    other chunks are its nearest neighbours) and a little noise; deterministic in n."""
    topic, sub = n % TOPICS, (n // TOPICS) % SUBTOPICS
    c, s, e = _gauss(topic), _gauss(10_000 + topic * SUBTOPICS + sub), _gauss(1_000_000 + n)
    return [1.0 + 0.2 * c[i] + 0.1 * s[i] + 0.01 * e[i] for i in range(DIM)]


async def main(action: str, count: int) -> dict[str, object]:
    import numpy as np
    from lightrag.kg.postgres_impl import PGVectorStorage
    from lightrag.kg.shared_storage import initialize_share_data
    from lightrag.utils import EmbeddingFunc

    initialize_share_data()

    async def embed(texts: list[str], **_: object) -> np.ndarray:
        return np.array([vector(int(t.rsplit(" ", 1)[-1])) for t in texts], dtype=np.float32)

    func = EmbeddingFunc(embedding_dim=DIM, func=embed, model_name="sim-embed")
    config = {"embedding_batch_num": 64, "vector_db_storage_cls_kwargs": {"cosine_better_than_threshold": 0.2}}

    def storage(workspace: str) -> PGVectorStorage:
        return PGVectorStorage(namespace="chunks", workspace=workspace, global_config=config, embedding_func=func)

    if action == "fill":
        stores = {ws: storage(ws) for ws in ("alpha", "beta")}
        for store in stores.values():
            await store.initialize()
        for ws, store in stores.items():
            parity = 0 if ws == "alpha" else 1
            chunks = {
                f"chunk-{n}": {
                    "content": f"chunk text {n}",
                    "full_doc_id": f"doc-{n // 10}",
                    "tokens": 3,
                    "chunk_order_index": n % 10,
                    "file_path": "corpus.txt",
                }
                for n in range(count)
                if n % 2 == parity
            }
            await store.upsert(chunks)
            await store.index_done_callback()
        table = stores["alpha"].table_name
        for store in stores.values():
            await store.finalize()
        return {"table": table}
    store = storage("alpha")
    await store.initialize()
    # a query text whose vector is chunk 100's: its topic's chunks are its nearest neighbours
    results = await store.query("chunk text 100", top_k=count)
    # what LightRAG's own pooled connections see (the role's settings apply to new sessions)
    row = await store.db.query("SELECT current_setting('hnsw.ef_search', true) AS ef")
    await store.finalize()
    return {"returned": len(results), "ef_search": (row or {}).get("ef")}


if __name__ == "__main__":
    print(json.dumps(asyncio.run(main(sys.argv[1], int(sys.argv[2])))))
