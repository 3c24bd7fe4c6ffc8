"""Optional integrations (Hugging Face, torchvision); imported only when a model needs them. timm needs none."""
