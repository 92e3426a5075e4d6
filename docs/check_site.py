"""Check the built site in a real browser: ``python docs/check_site.py`` (``make docs-check``).

Serves ``site/`` on a local port and opens every page in headless Chromium
(Debian's ``chromium`` and ``chromium-driver``, driven by selenium). A page
passes when:

- the browser's console shows no error (a missing file, a script error, a
  refused request);
- every resource it loaded came from the site itself (no CDN, no font
  service: the pages must read offline);
- every formula was typeset by MathJax, without a TeX error, and no TeX
  shows untypeset (``\\(``, ``\\[`` or ``$$`` in the text, the table of contents included);
- every image loaded (has a width);
- every link to another page of the site points to a file that exists, and
  every ``#anchor`` to an element that exists.

``--screenshots DIR`` also saves two pages as PNGs (the README shows them).
Exit status 0 when every page passes, 1 otherwise, 2 when the browser or the
site is missing.
"""

import argparse
import functools
import html.parser
import http.server
import pathlib
import shutil
import sys
import threading
import time
import urllib.parse

ROOT = pathlib.Path(__file__).resolve().parent.parent

#: (page, element id to scroll to or None, file name): the screenshots the README shows.
SCREENSHOTS = [("tutorials/04_the_fisher_three_ways.html", "four-matrices-from-one-formula", "site_tutorial.png"),
               ("exercises/04_kronecker_matvec.html", None, "site_exercise.png")]

#: Run in the page once MathJax is done: what the checks need, as one dictionary.
INSPECT = r"""
const content = document.querySelector('.md-content') || document.body;
const math = Array.from(content.querySelectorAll('.arithmatex'));
const typeset = math.filter(e => e.querySelector('mjx-container'));
const errors = Array.from(content.querySelectorAll('mjx-merror, [data-mjx-error]'))
    .map(e => e.textContent.slice(0, 80));
const images = Array.from(content.querySelectorAll('img')).map(
    e => ({src: e.getAttribute('src'), ok: e.complete && e.naturalWidth > 0}));
const raw = Array.from(document.querySelectorAll('.md-nav__link, .md-typeset p, .md-typeset li, .md-typeset td, h1, h2, h3'))
    .filter(e => !e.closest('pre, code') && /\\\(|\\\[|\$\$/.test(e.innerText)).map(e => e.innerText.slice(0, 80));
const links = Array.from(document.querySelectorAll('a[href]')).map(e => e.href);
const resources = performance.getEntriesByType('resource').map(e => e.name);
return {math: math.length, typeset: typeset.length, errors: errors, images: images, raw: raw,
        links: links, resources: resources};
"""

#: Resolves once MathJax has typeset the page (it starts when its script has run: poll for up to 20 s).
WAIT_FOR_MATHJAX = """
const done = arguments[arguments.length - 1];
const started = Date.now();
(function wait() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    mj.startup.promise.then(() => done('ok'), (err) => done('MathJax failed: ' + err));
  } else if (Date.now() - started > 20000) {
    done('no MathJax');
  } else {
    setTimeout(wait, 50);
  }
})();
"""


class Ids(html.parser.HTMLParser):
    """The ``id`` (and ``name``) attributes of an HTML file: the anchors a link may point to."""

    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def anchors(path):
    parser = Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def serve(site):
    """Serve ``site`` on a free local port in a background thread; returns (server, base URL)."""
    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):  # the page report says what failed; no request log
            pass

    handler = functools.partial(Quiet, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/"


def browser(width=1280, height=900):
    """Headless Chromium from Debian's packages, with its console log kept."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        raise SystemExit("check_site: needs chromium and chromedriver on PATH (Debian: "
                         "apt-get install chromium chromium-driver); found "
                         f"chromium={binary}, chromedriver={driver_path}")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(60)
    driver.set_script_timeout(60)
    return driver


def check_links(page, links, base, site):
    """The broken internal links of ``page``: files that do not exist, anchors that are not there."""
    problems = []
    for link in links:
        if not link.startswith(base):
            continue  # another site (a paper's address): not followed
        url = urllib.parse.urlsplit(link)
        relative = urllib.parse.unquote(url.path)[1:]
        target = site / relative
        if target.is_dir():
            target = target / "index.html"
        if not target.is_file():
            problems.append(f"broken link to {relative}")
        elif url.fragment and target.suffix == ".html" and url.fragment not in anchors(target):
            problems.append(f"link to {relative}#{url.fragment}: no such anchor")
    return problems


def check_page(driver, base, site, page):
    """Open ``page`` and return (figures for the report line, the list of problems)."""
    driver.get(base + page)
    state = driver.execute_async_script(WAIT_FOR_MATHJAX)
    facts = driver.execute_script(INSPECT)
    problems = []
    for entry in driver.get_log("browser"):
        if entry["level"] == "SEVERE":
            problems.append(f"console error: {entry['message'][:200]}")
    foreign = [url for url in facts["resources"] if not url.startswith(base)]
    problems += [f"loaded from outside the site: {url}" for url in foreign]
    if facts["math"] and state != "ok":
        problems.append(f"{facts['math']} formulas but MathJax did not load ({state})")
    if facts["typeset"] < facts["math"]:
        problems.append(f"{facts['math'] - facts['typeset']} of {facts['math']} formulas not typeset")
    problems += [f"TeX error: {text}" for text in facts["errors"]]
    problems += [f"TeX shown untypeset: {text!r}" for text in facts["raw"]]
    problems += [f"image did not load: {image['src']}" for image in facts["images"] if not image["ok"]]
    problems += check_links(page, facts["links"], base, site)
    summary = f"math {facts['math']}, figures {len(facts['images'])}, links {len(facts['links'])}"
    return summary, problems


def screenshot(driver, base, page, anchor, path):
    driver.get(base + page + (f"#{anchor}" if anchor else ""))
    driver.execute_async_script(WAIT_FOR_MATHJAX)
    time.sleep(0.5)
    driver.save_screenshot(str(path))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--site", type=pathlib.Path, default=ROOT / "site", help="the built site (default: site/)")
    parser.add_argument("--screenshots", type=pathlib.Path, default=None,
                        help="also save the README's two screenshots into this folder")
    args = parser.parse_args(argv)
    site = args.site.resolve()
    if not (site / "index.html").is_file():
        print(f"check_site: --site {args.site} has no index.html; build the site first (make docs)", file=sys.stderr)
        return 2
    pages = sorted(path.relative_to(site).as_posix() for path in site.rglob("*.html")
                   if path.name != "404.html" and "assets" not in path.parts)
    server, base = serve(site)
    driver = browser()
    failed, start = 0, time.perf_counter()
    try:
        for i, page in enumerate(pages, 1):
            summary, problems = check_page(driver, base, site, page)
            failed += bool(problems)
            print(f"[{i:3d}/{len(pages)}] {'FAIL' if problems else 'ok  '} {page}  ({summary})", flush=True)
            for problem in problems:
                print(f"        {problem}", flush=True)
        if args.screenshots:
            args.screenshots.mkdir(parents=True, exist_ok=True)
            for page, anchor, name in SCREENSHOTS:
                screenshot(driver, base, page, anchor, args.screenshots / name)
                print(f"screenshot of {page}: {args.screenshots / name}")
    finally:
        driver.quit()
        server.shutdown()
    print(f"{len(pages) - failed} of {len(pages)} pages passed in {time.perf_counter() - start:.0f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
