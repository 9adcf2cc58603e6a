"""One self-contained HTML page: summary, per-file verdicts and a filterable findings table.

Everything a scanned file can influence (paths, messages, evidence) is escaped, and a content
security policy allows only the page's own script and style to run."""
from __future__ import annotations

import base64
import hashlib
from html import escape

from ..findings import Report
from .rules import SCAN_INCOMPLETE

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:1.5rem;color:#1b1f24;background:#fff}
h1{font-size:1.4rem;margin:0 0 .5rem}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
table{border-collapse:collapse;width:100%;font-size:.9rem}
th,td{border-bottom:1px solid #d8dee4;padding:.35rem .5rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}
pre{margin:.2rem 0 0;padding:.4rem;background:#f6f8fa;border-radius:4px;white-space:pre-wrap;word-break:break-all;font-size:.82rem}
.badge{display:inline-block;padding:.05rem .45rem;border-radius:1rem;font-size:.8rem;font-weight:600;color:#fff}
.malicious,.critical{background:#a40e26}.high{background:#cf222e}.suspicious,.medium{background:#bc4c00}
.low{background:#7d6800}.info{background:#57606a}.inconclusive{background:#6639ba}.clean{background:#1a7f37}
.counts span{margin-right:1rem}.where{color:#57606a;font-size:.82rem}
.filters{display:flex;gap:.5rem;margin:.5rem 0;flex-wrap:wrap}
.filters input{flex:1;min-width:14rem;padding:.3rem}.filters select{padding:.3rem}
tr[hidden]{display:none}
"""

_SCRIPT = """
(function(){
  var q=document.getElementById('q'),sev=document.getElementById('severity'),cat=document.getElementById('category');
  var rows=Array.prototype.slice.call(document.querySelectorAll('#findings tbody tr'));
  var order=['info','low','medium','high','critical'];
  function apply(){
    var text=q.value.toLowerCase(),s=sev.value,c=cat.value,shown=0;
    rows.forEach(function(row){
      var rs=row.getAttribute('data-severity');
      var sevOk=!s||(s==='inconclusive'?rs==='inconclusive':(rs==='inconclusive'||order.indexOf(rs)>=order.indexOf(s)));
      var ok=sevOk&&(!text||row.textContent.toLowerCase().indexOf(text)>=0)&&(!c||row.getAttribute('data-category')===c);
      row.hidden=!ok; if(ok){shown++;}
    });
    document.getElementById('shown').textContent=String(shown);
    document.body.setAttribute('data-shown',String(shown));
  }
  function fromHash(){
    var params=new URLSearchParams(location.hash.replace(/^#/,''));
    if(params.has('q')){q.value=params.get('q');}
    if(params.has('severity')){sev.value=params.get('severity');}
    if(params.has('category')){cat.value=params.get('category');}
  }
  [q,sev,cat].forEach(function(el){el.addEventListener('input',apply);el.addEventListener('change',apply);});
  window.addEventListener('hashchange',function(){fromHash();apply();});
  fromHash();apply();
  document.body.setAttribute('data-ready','1');
})();
"""


_RANK = {"critical": 0, "high": 1, "medium": 2, "inconclusive": 3, "low": 4, "info": 5}


def _e(text) -> str:
    return escape(str(text), quote=True)


def _badge(label: str) -> str:
    return f'<span class="badge {_e(label)}">{_e(label)}</span>'


def _rows(report: Report):
    """(severity label, category, rule, message, where, evidence) for every finding and problem."""
    for owner in list(report.repositories) + list(report.files):
        for finding in sorted(owner.findings, key=lambda f: -f.severity):
            reason = getattr(finding, "suppressed", None)
            message = finding.message if reason is None else f"{finding.message} (suppressed: {reason})"
            yield (str(finding.severity), finding.category, finding.rule, message,
                   finding.location.describe(), finding.evidence)
        for problem in owner.problems:
            yield ("inconclusive", "inconclusive", SCAN_INCOMPLETE, problem.reason,
                   problem.location.describe(), "")
    for error in report.errors:
        yield ("inconclusive", "inconclusive", SCAN_INCOMPLETE, error, "", "")


def render_html(report: Report) -> str:
    summary = report.summary()
    rows = sorted(_rows(report), key=lambda row: _RANK.get(row[0], 0))
    problems = sum(1 for row in rows if row[0] == "inconclusive")
    categories = sorted({row[1] for row in rows})
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    style_hash = base64.b64encode(hashlib.sha256(_STYLE.encode("utf-8")).digest()).decode("ascii")
    csp = (f"default-src 'none'; script-src 'sha256-{script_hash}'; style-src 'sha256-{style_hash}'; "
           "img-src 'none'; form-action 'none'; base-uri 'none'")
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>malhug report: {_e(summary['verdict'])}</title>",
        f"<style>{_STYLE}</style></head>",
        f'<body data-verdict="{_e(summary["verdict"])}">',
        f"<h1>malhug report {_badge(summary['verdict'])}</h1>",
        f'<p class="where">malhug {_e(report.tool_version)}; targets: '
        f"{_e(', '.join(report.targets)) or '(none)'}</p>",
        '<p class="counts">'
        f"<span><b>{summary['files']}</b> file(s)</span>"
        + "".join(f"<span>{_badge(v)} {n}</span>" for v, n in summary["verdicts"].items())
        + f"<span><b>{summary['findings']}</b> finding(s)</span>"
        + f"<span><b>{problems}</b> problem(s)</span></p>",
        '<p class="counts">' + "".join(f"<span>{_badge(s)} {n}</span>"
                                       for s, n in reversed(list(summary["severities"].items()))) + "</p>",
    ]
    for error in report.errors:
        out.append(f'<p>{_badge("inconclusive")} {_e(error)}</p>')
    out.extend(_repositories(report))
    out.extend(_files(report))
    out.append("<h2>Findings and problems</h2>")
    out.append('<div class="filters">'
               '<input id="q" type="search" placeholder="filter by text" aria-label="filter by text">'
               '<select id="severity" aria-label="minimum severity"><option value="">any severity</option>'
               + "".join(f'<option value="{s}">{s} and above</option>' for s in
                         ("low", "medium", "high", "critical"))
               + '<option value="inconclusive">problems only</option></select>'
               '<select id="category" aria-label="category"><option value="">any category</option>'
               + "".join(f'<option value="{_e(c)}">{_e(c)}</option>' for c in categories)
               + f'</select><span class="where"><span id="shown">{len(rows)}</span> of {len(rows)} shown</span></div>')
    out.append('<table id="findings"><thead><tr><th>severity</th><th>category</th><th>rule</th>'
               "<th>finding</th></tr></thead><tbody>")
    for severity, category, rule, message, where, evidence in rows:
        evidence_html = f"<pre>{_e(evidence)}</pre>" if evidence else ""
        out.append(
            f'<tr data-severity="{_e(severity)}" data-category="{_e(category)}">'
            f"<td>{_badge(severity)}</td><td>{_e(category)}</td><td><code>{_e(rule)}</code></td>"
            f'<td>{_e(message)}<div class="where">{_e(where)}</div>{evidence_html}</td></tr>')
    out.append("</tbody></table>")
    out.append(f"<script>{_SCRIPT}</script>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _top(file) -> str:
    top = max((f for f in file.findings if getattr(f, "suppressed", None) is None),
              key=lambda f: f.severity, default=None)
    if top is not None:
        return f"[{top.severity}] {top.message}"
    return f"[inconclusive] {file.problems[0].reason}" if file.problems else ""


def _files(report: Report) -> list[str]:
    if not report.files:
        return []
    out = ["<h2>Files</h2>", '<table id="files"><thead><tr><th>verdict</th><th>path</th><th>format</th>'
           "<th>findings</th><th>problems</th><th>top finding</th></tr></thead><tbody>"]
    for file in sorted(report.files, key=lambda f: (-f.verdict.rank, f.path)):
        out.append(f'<tr data-verdict="{_e(file.verdict)}"><td>{_badge(str(file.verdict))}</td>'
                   f"<td>{_e(file.path)}</td><td>{_e(file.format)}</td><td>{len(file.findings)}</td>"
                   f"<td>{len(file.problems)}</td><td>{_e(_top(file))}</td></tr>")
    out.append("</tbody></table>")
    return out


def _repositories(report: Report) -> list[str]:
    out = []
    for repository in report.repositories:
        name = repository.id or repository.location
        revision = f" @ {repository.revision}" if repository.revision else ""
        out.append(f"<h2>Repository {_e(name)}{_e(revision)} {_badge(str(repository.verdict))}</h2>")
        details = [f"type {repository.type}", f"{len(repository.files)} file(s)"]
        if repository.fetched_bytes is not None and repository.total_bytes:
            details.append(f"fetched {repository.fetched_bytes} of {repository.total_bytes} bytes")
        out.append(f'<p class="where">{_e("; ".join(details))}</p>')
        roles = [(path, role) for path, role in repository.roles]
        if roles:
            out.append("<table><thead><tr><th>role</th><th>path</th></tr></thead><tbody>")
            out.extend(f"<tr><td>{_e(role)}</td><td>{_e(path)}</td></tr>" for path, role in roles)
            out.append("</tbody></table>")
        for note in repository.notes:
            out.append(f'<p class="where">note: {_e(note)}</p>')
    return out

