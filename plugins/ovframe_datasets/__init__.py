"""Datasets: the standard open-vocabulary benchmarks (detectron2 layouts), their preparation, and image folders."""
