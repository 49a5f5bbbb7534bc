"""The five MMAT-1M tools (DESIGN §3): `image_caption`, `ocr`, `label_bbox`, `face_detection`, `rag`.

Entry point: `operators.registry.build_operators(cfg, cache_dir, caption_client=None) -> OperatorSet`;
then `await ops.call(name, images, **args) -> OperatorResult` from the engine's event loop (or
`ops.run(...)` from plain code). One module per operator holds its backends; `base` has the interface
(`Backend`, `EndpointBackend`, `Operator`, the `OperatorRunner` protocol) and the text helpers,
`result` the result type, `cache` the content-hash cache, `images` decodes pixels safely.

`OPERATOR_NAMES` is the one list of operators, in their canonical order: the order the teacher is
offered them in, a row's `meta.operators_available` lists them in, and the card's table shows them in.
"""

OPERATOR_NAMES = ("image_caption", "ocr", "label_bbox", "face_detection", "rag")
