"""Evaluation: cases, the harness, the Gemini judge, its cache, and judge calibration against human labels."""
