"""Optional integrations (Hugging Face, torchvision, timm); imported only when a model needs them."""
