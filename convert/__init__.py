"""Conversion stage: trained Keras detector -> self-describing TFLite (float32/float16/dynamic/full-int8).

Library: ``convert.converter.convert(model, model_config, labels, quant, calibration_images, postprocess)``
returns the model bytes; ``python -m convert RUN --quant int8 --out model.tflite`` writes files and runs
the accuracy check (``convert.accuracy``).
"""
