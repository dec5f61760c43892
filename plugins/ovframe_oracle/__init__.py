"""The paper's analysis components: ground-truth masks as proposals, and an oracle region classifier."""
