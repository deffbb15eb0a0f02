"""The A/B experiment of the pricing service read as an experiment: outcomes, statistics, the verdict."""
