"""Lab 5: chest X-ray detection with Faster R-CNN (torchvision)."""
