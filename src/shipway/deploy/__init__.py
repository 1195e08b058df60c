"""Deployments on one machine: replicas, the gateway, rollouts and the agent that runs them."""
