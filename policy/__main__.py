"""The Motion CrossGuard policy pack. The rules live in motion_policy; this file only builds the pack."""

from motion_policy.pack import PACK_NAME, build_policies
from pulumi_policy import EnforcementLevel, PolicyPack

PolicyPack(name=PACK_NAME, enforcement_level=EnforcementLevel.MANDATORY, policies=build_policies())
