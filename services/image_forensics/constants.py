"""Names shared by the CLI and the pipeline (kept import-light so ``tidegate --help`` stays fast)."""

FAMILIES = ("realesrgan", "ae_deconv", "ae_bilinear", "sr_shuffle", "dcgan")
