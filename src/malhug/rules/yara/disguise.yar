// Code hidden from a reader, and the harmless markers proof-of-concept payloads leave.

rule obfuscation_base64_code_blob {
  meta:
    id = "obfuscation-base64-code-blob"
    category = "obfuscation"
    severity = "medium"
    description = "long base64 blob that decodes to Python or shell source (import, exec(, __import__, eval(, #!/bin/)"
  strings:
    $blob = /(aW1wb3J0|ZXhlYyg|X19pbXBvcnRfX|ZXZhbCg|IyEvYmluL|CmltcG9ydC|IGltcG9ydC|c3VicHJvY2Vzc)[A-Za-z0-9+\/]{192}/
  condition:
    $blob
}

rule obfuscation_exec_base64 {
  meta:
    id = "obfuscation-exec-base64"
    category = "obfuscation"
    severity = "medium"
    description = "exec/eval of base64-decoded text"
  strings:
    $call = /\b(exec|eval)\s*\(\s*(base64\.|b64decode|b32decode|b16decode|a85decode|__import__\(\s*['"]base64)/
  condition:
    $call
}

rule obfuscation_exec_compressed {
  meta:
    id = "obfuscation-exec-compressed"
    category = "obfuscation"
    severity = "medium"
    description = "exec/eval of decompressed data (zlib, gzip, bz2, lzma)"
  strings:
    $call = /\b(exec|eval)\s*\(\s*(__import__\(\s*['"])?(zlib|gzip|bz2|lzma)(['"]\s*\))?\.decompress\s*\(/
  condition:
    $call
}

rule obfuscation_exec_decoded {
  meta:
    id = "obfuscation-exec-decoded"
    category = "obfuscation"
    severity = "medium"
    description = "exec/eval of hex- or codec-decoded text (bytes.fromhex, codecs.decode, rot13)"
  strings:
    $hex = /\b(exec|eval)\s*\(\s*(bytes|bytearray)\.fromhex\s*\(/
    $codecs = /\b(exec|eval)\s*\(\s*codecs\.decode\s*\(/
    $rot13 = /['"]rot[_-]?13['"]/
    $unhex = /\b(exec|eval)\s*\(\s*binascii\.(unhexlify|a2b_[a-z0-9]{2,6})\s*\(/
  condition:
    any of them
}

rule obfuscation_marshal_loads {
  meta:
    id = "obfuscation-marshal-loads"
    category = "obfuscation"
    severity = "medium"
    description = "loads a marshalled code object (marshal.loads), hiding code from a source reader"
  strings:
    $loads = /\bmarshal\.loads\s*\(/
  condition:
    $loads
}

rule obfuscation_eval_compile {
  meta:
    id = "obfuscation-eval-compile"
    category = "obfuscation"
    severity = "medium"
    description = "exec/eval of a freshly compiled code object (eval(compile(...)))"
  strings:
    $call = /\b(exec|eval)\s*\(\s*compile\s*\(/
  condition:
    $call
}

rule obfuscation_chr_chain {
  meta:
    id = "obfuscation-chr-chain"
    category = "obfuscation"
    severity = "medium"
    description = "text assembled character by character from numbers (chr(105)+chr(100)+chr(...), ''.join(map(chr, ...)))"
  strings:
    $plus = /chr\(\s*[0-9]{2,3}\s*\)\s*\+\s*chr\(\s*[0-9]{2,3}\s*\)\s*\+\s*chr\(\s*[0-9]/
    $join = /['"]{2}\s*\.join\(\s*(map\(\s*chr\s*,|\[?\s*chr\s*\()/
  condition:
    any of them
}

rule obfuscation_powershell_encoded {
  meta:
    id = "obfuscation-powershell-encoded"
    category = "obfuscation"
    severity = "high"
    description = "PowerShell run with a base64-encoded command (-EncodedCommand)"
  strings:
    $enc = /\b(powershell|pwsh)(\.exe)?\s([^\n]{0,80}\s)?-(e|ec|en|enc|enco|encod|encode|encoded|encodedcommand)\s+['"]?[A-Za-z0-9+\/=]{16,}/ nocase
  condition:
    $enc
}

rule poc_calculator {
  meta:
    id = "poc-calculator"
    category = "poc"
    severity = "low"
    description = "starts a calculator, the classic harmless proof of code execution"
  strings:
    $calc_run = /\b(system|popen|Popen|call|run|startfile|check_output|spawn[a-z]{0,3})\(\s*\[?\s*['"]calc(\.exe)?['"]/ nocase
    $calc_exe_path = "calc.exe" nocase
    $gnome = "gnome-calculator"
    $xcalc = /\b(xcalc|kcalc)\b/
    $mac = /open\s+-a\s+['"]?Calculator\b/
    $app = "Calculator.app"
  condition:
    any of them
}

rule poc_rickroll {
  meta:
    id = "poc-rickroll"
    category = "poc"
    severity = "low"
    description = "the rickroll video id, a common joke payload in proof-of-concept files"
  strings:
    $video = "dQw4w9WgXcQ"
  condition:
    $video
}
