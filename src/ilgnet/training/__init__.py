"""Training runs: a run checked, written and started (`runs`: `caffe train` locally or in the Docker image, resumed
from its snapshots), watched while it runs (`monitor`: progress, divergence), and its curves (`curves`)."""
