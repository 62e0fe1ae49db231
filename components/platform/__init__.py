"""The shared platform every service attaches to: ECS cluster and load balancer (`platform`), and the
web ACL in front of it (`waf`)."""
