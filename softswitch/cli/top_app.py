"""The `softswitch top` screen (textual): live calls, call rate, registrations, errors, relays.

Every second it asks the management API for the calls, the metrics and
the relays, off the UI loop (`asyncio.to_thread`: urllib blocks). Keys:
Enter opens the selected call's detail and SIP ladder, `h` hangs it up,
`r` refreshes now, `q` quits; Escape leaves the detail.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from prometheus_client.parser import text_string_to_metric_families
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from softswitch.cli.api_client import ApiClient, ApiError
from softswitch.cli.calls_cmd import SHORT_ID, SUMMARY_COLUMNS, describe, summary_row

REFRESH = 1.0


@dataclass(slots=True)
class Figures:
    """What the status line shows, from one scrape of /metrics."""

    started: float = 0.0
    registrations: float = 0.0
    failed: float = 0.0  # calls ended FAILED, and 5xx we sent
    auth_failures: float = 0.0


def figures_of(text: str) -> Figures:
    out = Figures()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            name, labels, value = sample.name, sample.labels, sample.value
            if name == "softswitch_calls_started_total":
                out.started = value
            elif name == "softswitch_registrations":
                out.registrations = value
            elif name == "softswitch_auth_failures_total":
                out.auth_failures = value
            elif name == "softswitch_calls_ended_total" and labels.get("disposition") == "FAILED":
                out.failed += value
    return out


class CallScreen(Screen[None]):
    """One call: legs, timings, streams and the ladder, refreshed while open."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("h", "hangup", "Hang up"),
    ]

    def __init__(self, client: ApiClient, call_id: str) -> None:
        super().__init__()
        self.client = client
        self.call_id = call_id

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll():
            yield Static("loading…", id="detail")
        yield Footer()

    async def on_mount(self) -> None:
        await self.refresh_detail()
        self.set_interval(REFRESH, self.refresh_detail)

    async def refresh_detail(self) -> None:
        try:
            call = await asyncio.to_thread(self.client.get, f"/api/calls/{self.call_id}")
            text = "\n".join(describe(call))
        except ApiError as exc:
            text = f"error: {exc}"
        self.query_one("#detail", Static).update(text)

    async def action_hangup(self) -> None:
        app = self.app
        if isinstance(app, TopApp):
            await app.action_hangup_call(self.call_id)


class TopApp(App[None]):
    TITLE = "softswitch top"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "quit", "Quit"),
        Binding("enter", "open", "Detail"),
        Binding("h", "hangup", "Hang up"),
        Binding("r", "refresh", "Refresh"),
    ]

    def __init__(self, client: ApiClient) -> None:
        super().__init__()
        self.client = client
        self.calls: list[dict[str, Any]] = []
        self._last: tuple[float, Figures] | None = None
        self.rate = 0.0
        self.error: str | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("connecting…", id="status")
        table: DataTable[str] = DataTable(id="calls", cursor_type="row", zebra_stripes=True)
        yield table
        yield Footer()

    async def on_mount(self) -> None:
        table = self.query_one("#calls", DataTable)
        table.add_columns(*SUMMARY_COLUMNS)
        await self.action_refresh()
        self.set_interval(REFRESH, self.action_refresh)

    def _fetch(self) -> tuple[list[dict[str, Any]], Figures, dict[str, Any]]:
        return (self.client.get("/api/calls"), figures_of(self.client.get("/metrics")),
                self.client.get("/api/relays"))

    async def action_refresh(self) -> None:
        status = self.query_one("#status", Static)
        try:
            calls, figures, relays = await asyncio.to_thread(self._fetch)
        except ApiError as exc:
            self.error = str(exc)
            status.update(f"error: {exc}")
            return
        self.error = None
        now = time.monotonic()
        if self._last is not None and now > self._last[0]:
            self.rate = max(0.0, (figures.started - self._last[1].started) / (now - self._last[0]))
        self._last = (now, figures)
        self.calls = calls
        relay_text = (", ".join(f"{r.get('name', '?')} {r.get('load', '-')}"
                                for r in relays["relays"]) if relays["configured"] else "none")
        status.update(
            f"calls {len(calls)}   calls/s {self.rate:.1f}   registrations "
            f"{figures.registrations:.0f}   failed calls {figures.failed:.0f}   auth failures "
            f"{figures.auth_failures:.0f}   relays {relay_text}")
        table = self.query_one("#calls", DataTable)
        selected = self.selected()
        table.clear()
        for call in calls:
            table.add_row(*summary_row(call), key=call["id"])
        if selected is not None:
            for row, call in enumerate(calls):
                if call["id"] == selected:
                    table.move_cursor(row=row)

    def selected(self) -> str | None:
        table = self.query_one("#calls", DataTable)
        if not self.calls or table.row_count == 0:
            return None
        row = table.cursor_row
        return self.calls[row]["id"] if 0 <= row < len(self.calls) else None

    def action_open(self) -> None:
        call = self.selected()
        if call is not None:
            self.push_screen(CallScreen(self.client, call))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()

    async def action_hangup(self) -> None:
        call = self.selected()
        if call is not None:
            await self.action_hangup_call(call)

    async def action_hangup_call(self, call: str) -> None:
        try:
            await asyncio.to_thread(self.client.post, f"/api/calls/{call}/hangup")
        except ApiError as exc:
            self.notify(f"not hung up: {exc}", severity="error")
            return
        self.notify(f"call {call[:SHORT_ID]} hung up")
        await self.action_refresh()
