"""moto's server, with DynamoDB's current TransactWriteItems limit.

DynamoDB accepts up to 100 actions in one TransactWriteItems call (raised
from 25 in 2022); moto still refuses more than 25. The platform's
MAX_TRANSACTION_WRITES is DynamoDB's 100, so the tests run moto with it.

    python scripts/moto_server.py -H 127.0.0.1 -p 5000
"""

import sys

import moto.dynamodb.responses as dynamodb_responses
from moto.server import main

dynamodb_responses.TRANSACTION_MAX_ITEMS = 100

if __name__ == "__main__":
    sys.exit(main())
