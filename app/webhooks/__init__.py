"""Events delivered to subscribed endpoints as Standard Webhooks.

- ``signing``: secrets and the ``webhook-*`` headers;
- ``targets``: which URLs and addresses may receive them (SSRF);
- ``transport``: one HTTP attempt, to the address that was checked;
- ``schedule``: when a failed attempt is retried;
- ``worker``: ``python -m app deliver``, the process that sends them;
- ``subscriptions``: the admin API's service.

The outbox rows themselves are written by app/queries/events.py.
"""
