// Fetching a payload and running it at once.

rule download_exec_curl_pipe_shell {
  meta:
    id = "download-exec-curl-pipe-shell"
    category = "download_exec"
    severity = "high"
    description = "downloads a script with curl and pipes it straight into a shell or interpreter"
  strings:
    $pipe = /\bcurl\s[^\n|]{0,240}\|\s*(sudo\s+(-[A-Za-z]+\s+)?)?(\/usr)?(\/bin\/)?((ba|z|da|k)?sh\b|(python[0-9.]{0,4}|perl|ruby)\s*(-\s|[\r\n;&)'"]))/
  condition:
    $pipe
}

rule download_exec_wget_pipe_shell {
  meta:
    id = "download-exec-wget-pipe-shell"
    category = "download_exec"
    severity = "high"
    description = "downloads a script with wget -O- and pipes it straight into a shell or interpreter"
  strings:
    $pipe = /\bwget\s[^\n|]{0,240}\|\s*(sudo\s+(-[A-Za-z]+\s+)?)?(\/usr)?(\/bin\/)?((ba|z|da|k)?sh\b|(python[0-9.]{0,4}|perl|ruby)\s*(-\s|[\r\n;&)'"]))/
  condition:
    $pipe
}

rule download_exec_fetch_chmod {
  meta:
    id = "download-exec-fetch-chmod"
    category = "download_exec"
    severity = "high"
    description = "downloads a file and immediately marks it executable (wget ... && chmod +x)"
  strings:
    $chmod = /\b(wget|curl)\s[^\n]{0,240}(&&|;)\s*chmod\s+(a?\+x|u\+x|[0-7]?[0-7][0-7][1357])\b/
  condition:
    $chmod
}

rule download_exec_powershell_webclient {
  meta:
    id = "download-exec-powershell-webclient"
    category = "download_exec"
    severity = "critical"
    description = "PowerShell downloads a script with Net.WebClient and runs it with Invoke-Expression"
  strings:
    $iex_first = /\b(iex|invoke-expression)\s*\(?\s*\(?\s*New-Object\s+(System\.)?Net\.WebClient\s*\)?\s*\.\s*Download(String|Data)\b/ nocase
    $iex_wrapped = /\b(iex|invoke-expression)\s*\(\s*\([^\n]{0,120}\.Download(String|Data)\s*\(/ nocase
    $iex_last = /\.Download(String|Data)\s*\([^\n]{0,240}\)\s*\|\s*(iex|invoke-expression)\b/ nocase
  condition:
    any of them
}

rule download_exec_powershell_iwr_iex {
  meta:
    id = "download-exec-powershell-iwr-iex"
    category = "download_exec"
    severity = "high"
    description = "PowerShell fetches content with Invoke-WebRequest/Invoke-RestMethod and runs it with Invoke-Expression"
  strings:
    $piped = /\b(iwr|irm|Invoke-WebRequest|Invoke-RestMethod)\s[^\n|]{0,240}\|\s*(iex|Invoke-Expression)\b/ nocase
    $wrapped = /\b(iex|Invoke-Expression)\s*\(\s*\(?\s*(iwr|irm|Invoke-WebRequest|Invoke-RestMethod)\s/ nocase
  condition:
    any of them
}

rule download_exec_certutil {
  meta:
    id = "download-exec-certutil"
    category = "download_exec"
    severity = "high"
    description = "certutil used as a downloader (-urlcache), a common Windows living-off-the-land trick"
  strings:
    $certutil = /\bcertutil(\.exe)?\s[^\n]{0,80}[-\/](urlcache|verifyctl)\b/ nocase
  condition:
    $certutil
}

rule download_exec_bitsadmin {
  meta:
    id = "download-exec-bitsadmin"
    category = "download_exec"
    severity = "high"
    description = "bitsadmin used as a downloader (/transfer)"
  strings:
    $bits = /\bbitsadmin(\.exe)?\s[^\n]{0,80}\/(transfer|addfile)\b/ nocase
  condition:
    $bits
}

rule download_exec_windows_script_host {
  meta:
    id = "download-exec-windows-script-host"
    category = "download_exec"
    severity = "high"
    description = "mshta/regsvr32/rundll32 made to run a remote or inline script"
  strings:
    $mshta = /\bmshta(\.exe)?\s+['"]?(https?|javascript|vbscript):/ nocase
    $regsvr = /\bregsvr32(\.exe)?\s[^\n]{0,80}\/i:\s*['"]?https?:/ nocase
    $rundll = /\brundll32(\.exe)?\s[^\n]{0,80}javascript:/ nocase
  condition:
    any of them
}

rule download_exec_python_urlopen_exec {
  meta:
    id = "download-exec-python-urlopen-exec"
    category = "download_exec"
    severity = "critical"
    description = "Python fetches code over HTTP and passes it to exec/eval"
  strings:
    $urlopen = /\b(exec|eval)\s*\(\s*(urllib[0-9]?\.(request\.)?)?urlopen\s*\(/
    $requests = /\b(exec|eval)\s*\(\s*requests\.get\s*\(/
    $inline = /\b(exec|eval)\s*\(\s*__import__\(\s*['"](urllib|requests)/
    $oneliner = /\bimport\s+(urllib|requests)[^\n]{0,400}\b(exec|eval)\s*\(/
  condition:
    any of them
}
