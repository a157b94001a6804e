"""A synthetic e-commerce shop for demos, tests and benchmarks.

`generate_shop` writes customers, orders, consent history and behaviour events as the CSV and
JSON Lines files that cdp's batch connectors ingest, following a BG/NBD-style purchase model
with shopping seasons, so that RFM, lifecycle, loyalty and CLV have realistic data to work on.
"""

from cdp.demo.generator import DEFAULT_END, ShopFiles, generate_shop

__all__ = ["DEFAULT_END", "ShopFiles", "generate_shop"]
