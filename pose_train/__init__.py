"""pose-train: train 6D object-pose networks in a modern runtime, ship them to ROS Melodic."""
__version__ = "0.1.0"
