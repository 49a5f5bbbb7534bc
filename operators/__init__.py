"""The five MMAT-1M tools (DESIGN §3): `image_caption`, `ocr`, `label_bbox`, `face_detection`, `rag`.

Entry point: `operators.registry.build_operators(cfg, cache_dir, caption_client=None) -> OperatorSet`;
then `ops.run(name, images, **args) -> OperatorResult`. One module per operator holds its backends;
`base` has the interface, the cache wrapper and the text helpers; `images` decodes pixels safely.
"""
