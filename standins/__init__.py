"""Stand-ins for what the sandbox cannot reach: test tools, NOT part of the shipped CLI.

Each one says loudly what it is not, and keeps to the contract of the real thing the deploy
or the client depends on:

- ``weaviate/weaviate``: a Weaviate REST API subset (an executable, installed on the hosts),
  packaged like Weaviate's release tarball by ``weaviate_release``;
- ``lambda_cloud``: the Lambda Cloud API, for the client's tests and the reprovision drill;
- ``nodesource``: NodeSource's signed apt repository, served to the sandbox hosts;
- ``smtp/smtp-sink``: an SMTP server that keeps each message as a file (an executable).
"""
