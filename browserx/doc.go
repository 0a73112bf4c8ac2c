// Package browserx puts a real browser on the delivery line: one headless
// Chromium, driven over the DevTools protocol (chromedp), serves every
// browser path of a run.
//
// A Path (--browser [NAME=]URL) opens one tab on a blank page of the URL's
// own origin (or of --browser-origin), runs new EventSource(URL) there and
// turns every event Chromium dispatches into an event record, timed by
// Chromium's own Network.eventSourceMessageReceived timestamp mapped onto
// Go's clock. Its state comes from the EventSource's open and error events;
// CORS rejections, non-200 answers, wrong content types and certificate
// errors end Run with an error that says which.
//
// A Page (--page [NAME=]URL --expect SELECTOR) loads a real page of the
// app, waits until its EventSource is open, and emits a record each time the
// selector becomes visible. A probe is matched by its token in the record's
// data (the element's text), so the app must render some of the payload:
// for example, a probe --template that puts the token in the story title
// that the notification shows.
//
// Chromium holds at most six HTTP/1.1 connections per host for one
// profile; all tabs share one profile, as a user's tabs do, so a seventh
// EventSource to one HTTP/1.1 host waits, and a Path reports that as
// waiting (connection limit) instead of losing it silently.
package browserx
