"""moto's server, with two gaps to real AWS closed.

- DynamoDB accepts up to 100 actions in one TransactWriteItems call (raised
  from 25 in 2022); moto still refuses more than 25. The platform's
  MAX_TRANSACTION_WRITES is DynamoDB's 100, so the tests run moto with it.
- SQS keeps the MessageSystemAttributes (AWSTraceHeader) of each entry of a
  SendMessageBatch, as it does for SendMessage; moto drops them for batches.

    python scripts/moto_server.py -H 127.0.0.1 -p 5000
"""

import sys

import moto.dynamodb.responses as dynamodb_responses
import moto.sqs.models as sqs_models
from moto.server import main

dynamodb_responses.TRANSACTION_MAX_ITEMS = 100

_send_message_batch = sqs_models.SQSBackend.send_message_batch


def _send_message_batch_with_system_attributes(self, queue_name, entries):
    messages, failed = _send_message_batch(self, queue_name, entries)
    by_id = {entry["Id"]: entry for entry in entries.values()}
    for message in messages:
        entry = by_id.get(getattr(message, "user_id", None), {})
        if entry.get("MessageSystemAttributes"):
            message.system_attributes = entry["MessageSystemAttributes"]
    return messages, failed


sqs_models.SQSBackend.send_message_batch = _send_message_batch_with_system_attributes

if __name__ == "__main__":
    sys.exit(main())
