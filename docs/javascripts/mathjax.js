// MathJax 3 configuration, read before the bundle loads (the bundle is served from the site).
// arithmatex wraps docstring and page math in \( \) and \[ \]; notebooks use $ and $$.
window.MathJax = {
  tex: {
    inlineMath: [["\\(", "\\)"], ["$", "$"]],
    displayMath: [["\\[", "\\]"], ["$$", "$$"]],
    processEscapes: true,
    processEnvironments: true,
  },
  options: {
    skipHtmlTags: ["script", "noscript", "style", "textarea", "pre", "code"],
  },
};
