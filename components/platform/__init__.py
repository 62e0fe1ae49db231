"""The shared platform every service attaches to: ECS cluster and load balancer (`platform`), the web
ACL in front of it (`waf`), and which service holds which listener priority (`listener_priorities`)."""
