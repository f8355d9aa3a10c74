"""``make bench``: micro-benchmarks, each printed as a Markdown table and saved under outputs/bench/.

- ``afa``: the cost of aggregation + MAX_dim selection against the MLP it follows (the issue's setting:
  batch 128 x 36 regions x 1024-d, captions of 12-40 tokens), forward and forward+backward.
- ``ranking``: ``retrieval_metrics`` against a per-query argsort written in the style of the official
  VSE∞ evaluation, on the same tie-free F30K 1K (1000 x 5000) and COCO 5K (5000 x 25000) float32
  matrices; the bench fails if ranks, recalls or top-1 differ.

- ``train_step``: one full training step (``model.losses`` + backward + gradient clipping + optimiser step, as
  the trainer's ``_train_step``) of every model (VSE∞, AFA, USER with SGE and both queues, MVSEN in both
  directions) at the paper's dimensions and its preset's batch (128; MVSEN 64): 36 regions x 2048-d, a
  BERT-base-shaped text encoder with random weights (saved to a temporary folder, nothing downloaded), embed
  1024, captions of 8-16 tokens; seconds per step, images per second against VSE∞'s, and each step's
  profile by part (:func:`~itrlib.suite.bench.train_step.step_profile`).

- ``global_scoring``: a global model's whole F30K 1K and COCO 5K score matrices as evaluation computes them
  (block-sharded float32 inner products) beside one plain matrix product, in GFLOP/s and as a fraction of the
  machine's float32 matrix-product rate.

- ``evaluation_time``: a whole evaluation's projected seconds against the gallery size (1K, 5K, 25K images
  with 5 captions each) for a global model, MVSEN (each direction, the ensemble) and two-stage MVSEN, from
  rates measured in the same run (:func:`evaluation_time`).

- ``mvsen_scoring``: MVSEN's pairwise scoring at the paper's widths (36 regions x 1024-d, captions of 10-20
  words, d_c 256, 3 GCN layers, random weights): pairs per second of the batched :func:`block_scores`
  against :func:`caption_loop_scores`, the release's ``shard_xattn`` way (blocks of 64 images, one caption
  at a time, both attention directions, two projections per GCN layer), in the same run on the same inputs;
  the ratio, the max |delta| between the two, each one's GFLOP/s and the fraction of the machine's sgemm rate
  the batched scorer reaches, the projected full F30K 1K / COCO 5K scoring time, and the projected two-stage
  COCO 5K time for several shortlist sizes (``mvsen_two_stage.md`` and its plot ``mvsen_two_stage.png``).

``python -m itrlib.suite.bench --only ranking`` runs one of them (``--only train_step --steps 3`` for a shorter run).
"""
