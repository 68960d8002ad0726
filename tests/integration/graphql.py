"""The webserver's GraphQL API, as the UI uses it: launch a backfill of a range of frames, read it."""

from collections.abc import Sequence

import requests

LAUNCH_BACKFILL = """
mutation($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on UnauthorizedError { message }
  }
}"""

BACKFILL_STATUS = """
query($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status numPartitions }
    ... on PythonError { message }
  }
}"""


def query(url: str, document: str, **variables) -> dict:
    response = requests.post(f"{url}/graphql", json={"query": document, "variables": variables}, timeout=60)
    response.raise_for_status()
    body = response.json()
    assert "errors" not in body, body["errors"]
    return body["data"]


def launch_range_backfill(url: str, assets: Sequence[str], first: str, last: str, title: str) -> str:
    """Backfill ``assets`` over the frames ``first`` .. ``last``; returns the backfill id."""
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": [name]}, "partitions": {"range": {"start": first, "end": last}}}
            for name in assets
        ],
        "title": title,
    }
    result = query(url, LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def backfill_status(url: str, backfill_id: str) -> str:
    result = query(url, BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
    assert result["__typename"] == "PartitionBackfill", result
    return result["status"]
