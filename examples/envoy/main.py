"""An ext_proc gatekeeper: refuses requests without an API key, tags the ones it lets
through, and removes a header the upstream should not reveal from responses."""

import nuclio_sdk

API_KEYS = {"demo"}


async def handler(context, event):
    phase = event.headers.get("processing-phase")
    if phase in ("1", "2"):  # the request: headers, or headers and body
        if event.headers.get("x-api-key") not in API_KEYS:
            return nuclio_sdk.Response(body={"error": "missing or unknown x-api-key"},
                                       content_type="application/json", status_code=401)
        # 200: go on upstream with these header changes (an empty body keeps the body).
        return nuclio_sdk.Response(headers={"x-gatekeeper": "passed",
                                            "x-nuclio-remove-headers": "x-api-key"})
    # The response (phase 4 or 5): event.fields["upstream_status"] is the upstream's status.
    context.logger.debug_with("response", path=event.path,
                              status=event.fields.get("upstream_status"))
    return nuclio_sdk.Response(headers={"x-nuclio-remove-headers": "x-powered-by"})
