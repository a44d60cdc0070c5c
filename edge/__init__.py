"""Edge runtime: camera frames -> TFLite SSD -> NumPy decode + NMS -> outputs. NumPy + a TFLite runtime only."""
