"""Deploying the pricing Bento as containers: the image, replicas behind HAProxy, rollout, manifests (docs/deploy.md)."""
