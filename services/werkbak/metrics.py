"""The werkbak's metrics: pages, logins, API calls, the directory (no labels about people or children)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from shared.metrics import LATENCY_BUCKETS, combos, precreate

PAGES = ("signalen", "signaal", "actie", "meldingen", "nieuw", "matches", "aanmelden", "callback", "afmelden",
         "afgemeld", "fout")
LOGIN_OUTCOMES = ("ok", "refused", "failed")


class WerkbakMetrics:
    """Counters and histograms of the werkbak."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.pages = Counter("werkbak_page_requests_total", "Pages served, by page and HTTP status.",
                             ["page", "status"], registry=registry)
        self.page_duration = Histogram("werkbak_page_duration_seconds", "Time to answer a page.", ["page"],
                                       buckets=LATENCY_BUCKETS, registry=registry)
        self.logins = Counter("werkbak_logins_total", "Logins at the identity provider, by outcome.", ["outcome"],
                              registry=registry)
        self.logouts = Counter("werkbak_logouts_total", "Logouts, by reason (asked, idle, expired).", ["reason"],
                               registry=registry)
        self.csrf_refused = Counter("werkbak_csrf_refused_total", "Form posts refused for a missing or wrong token.",
                                    registry=registry)
        self.api_calls = Counter("werkbak_api_calls_total", "Calls to intake and feedback, by answer status.",
                                 ["api", "status"], registry=registry)
        self.api_duration = Histogram("werkbak_api_call_duration_seconds", "Time of one call to an API.", ["api"],
                                      buckets=LATENCY_BUCKETS, registry=registry)
        self.directory_signals = Gauge("werkbak_directory_signals", "Signals the directory knows of.",
                                       registry=registry)
        self.ready = Gauge("werkbak_ready", "1 when the directory caught up and the identity provider answers.",
                           registry=registry)
        precreate(self.page_duration, combos(page=PAGES))
        precreate(self.logins, combos(outcome=LOGIN_OUTCOMES))
        precreate(self.logouts, combos(reason=("asked", "idle", "expired")))
        precreate(self.api_duration, combos(api=("intake", "feedback")))
