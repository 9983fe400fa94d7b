"""Golden tensors per box of the paper's figure: ``make_goldens.py`` writes them, ``tests/test_golden_boxes.py``
checks them."""
