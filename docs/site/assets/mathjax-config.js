// MathJax 3 (bundled: assets/mathjax/tex-svg-full.js, no network). pymdownx.arithmatex
// wraps each formula in <span class="arithmatex">\( … \)</span> or
// <div class="arithmatex">\[ … \]</div>; MathJax typesets those (and the table of
// contents' links, where a heading's formula arrives as plain TeX) and nothing else, so a
// dollar sign or a backslash in code or prose is left alone.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"]],
    displayMath: [["\\[", "\\]"]],
    processEscapes: false,
    processEnvironments: true
  },
  options: {
    ignoreHtmlClass: ".*|",
    processHtmlClass: "arithmatex|md-nav__link|md-ellipsis"  // formulas in headings show in the table of contents too
  },
  svg: { fontCache: "global" }
};
