"""Training methods, one file each, each plugging into the engine (hfgen.train.engine): gan, vae, mlm,
contrastive (text; contrastive_images for SimCLR), autoencoder, classifier (classifier_images for images) and
tokenizer (a plain run: it trains no network)."""
