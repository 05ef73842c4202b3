"""The audit beyond one process: sharded inputs, out-of-core confident learning, and the passes on Ray.

- :mod:`robustlabels.scale.shards`: row shards of ``.npy`` files, streamed ``.npy`` writes, a running top-T;
- :mod:`robustlabels.scale.confident`: cleanlab's two-pass low-memory confident learning on memory-mapped arrays;
- :mod:`robustlabels.scale.knn`: FAISS IVF shards merged on disk, per-shard all-vs-all search, exact flat shards;
- :mod:`robustlabels.scale.simifeat`: SimiFeat's votes and HOC's counts for one shard of rows;
- :mod:`robustlabels.scale.executor`: those passes as Ray tasks and Ray Data ``map_batches`` (needs the ``ray`` extra);
- :mod:`robustlabels.scale.cli`: ``python -m robustlabels.audit --executor ray``.

Only the executor imports Ray. User guide and measurements: ``docs/scale.md``.
"""
