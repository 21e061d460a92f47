"""logfan: multi-tenant log alerting on AWS Lambda (CloudWatch Logs -> Kinesis -> fan-out -> fan-in)."""

__version__ = "0.1.0"
