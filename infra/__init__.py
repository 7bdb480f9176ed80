"""The CDK app of dMCP on AWS: one construct per concept, composed by `DmcpStack`.

>>> from infra import DmcpStack, DmcpStackProps
>>> DmcpStack(app, "dmcp", props=DmcpStackProps(deployment=Deployment.load("dmcp.json"), code=code))
"""
