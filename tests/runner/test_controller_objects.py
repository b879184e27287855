"""AWX objects as code (docs/examples/awx-project/controller/configure.yml, awx.awx modules).

No AWX server can run here. The playbook runs for real - the awx.awx modules of the `ansible`
package, their argument checks, name lookups, survey and credential calls - against
tests.runner.fake_controller, a stand-in for the controller's REST API that stores what it is
sent. The test then checks what would reach AWX the way AWX would: survey specs against AWX's
survey rules, schedules parsed as RRULEs by dateutil (as AWX does), playbooks that exist in the
project, credential injectors that set the variables the modules read. What AWX itself does
with them (launching, RBAC, project sync) is not tested here.
"""

import datetime
import os
import subprocess

import yaml
from dateutil import rrule as dateutil_rrule
from dateutil import tz

from tests.runner.awx_job import EXAMPLE_PROJECT, REPO, VENV_BIN
from tests.runner.fake_controller import FakeController

from ansible_collections.cerniq.ops.plugins.module_utils.cerniq.api import api_argument_spec
from ansible_collections.cerniq.ops.plugins.module_utils.pg_connection import POSTGRES_ENV_FALLBACKS
from ansible_collections.cerniq.ops.plugins.module_utils.redis_connection import REDIS_ENV_FALLBACKS

SURVEY_TYPES = ('text', 'textarea', 'password', 'integer', 'float', 'multiplechoice', 'multiselect')
ACTING = ('repair_queues.yml', 'runbook_stuck_import.yml', 'runbook_rate_limiting.yml', 'runbook_sla_breach.yml',
          'runbook_quality_anomalies.yml')
SECRETS = dict(cerniq_vault_pg_password='pg-vault-secret-1', cerniq_vault_redis_password='redis-vault-secret-2',
               cerniq_vault_api_token='api-vault-secret-3')


def _configure(controller):
    env = dict(os.environ, CONTROLLER_HOST=controller.url, CONTROLLER_OAUTH_TOKEN='fake-controller-token',
               ANSIBLE_NOCOLOR='1')
    extra = ' '.join('%s=%s' % item for item in SECRETS.items())
    return subprocess.run([os.path.join(VENV_BIN, 'ansible-playbook'), 'controller/configure.yml', '-e', extra],
                          cwd=EXAMPLE_PROJECT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          check=False, timeout=600)


def _objects(controller, kind):
    return dict((o['name'], o) for o in controller.objects.get(kind, {}).values())


def _check_survey(spec):
    """AWX's survey rules (awx/api/views: JobTemplateSurveySpec.validate): what makes it refuse a spec."""
    assert set(spec) >= {'name', 'description', 'spec'}
    variables = [q['variable'] for q in spec['spec']]
    assert len(variables) == len(set(variables)), 'duplicate survey variable'
    for question in spec['spec']:
        assert question['type'] in SURVEY_TYPES and question['question_name'] and 'required' in question
        if question['type'] == 'multiplechoice':
            assert question['default'] in question['choices']
        if question['type'] == 'integer':
            assert question['min'] <= question['default'] <= question['max']
    return variables


def test_controller_objects_against_the_api_stand_in():
    with FakeController() as controller:
        first = _configure(controller)
        assert first.returncode == 0, first.stdout
        second = _configure(controller)
        assert second.returncode == 0, second.stdout
        assert 'changed=0' in second.stdout.split('PLAY RECAP')[-1]        # idempotent
        for secret in SECRETS.values():
            assert secret not in first.stdout + second.stdout

        [credential_type] = controller.objects['credential_types'].values()
        injected = set(credential_type['injectors']['env'])
        assert injected == {POSTGRES_ENV_FALLBACKS['login_password'][0], REDIS_ENV_FALLBACKS['redis_password'][0],
                            api_argument_spec()['api_token']['fallback'][1][0]}
        assert credential_type['injectors']['env']['PGPASSWORD'] == '{{ pg_password }}'   # left for AWX to fill
        [credential] = controller.objects['credentials'].values()
        assert credential['inputs'] == dict(pg_password=SECRETS['cerniq_vault_pg_password'],
                                            redis_password=SECRETS['cerniq_vault_redis_password'],
                                            api_token=SECRETS['cerniq_vault_api_token'])

        templates = _objects(controller, 'job_templates')
        for name, template in templates.items():
            playbook = os.path.join(EXAMPLE_PROJECT, template['playbook'])
            assert os.path.exists(playbook), name
            assert template['allow_simultaneous'] is False and template['execution_environment']
            assert controller.associations[('job_templates', template['id'], 'credentials')] == [credential['id']]
            survey = controller.surveys.get(('job_templates', template['id']))
            assert bool(survey) == template['survey_enabled'], name
            if survey:
                variables = _check_survey(survey)
                with open(playbook) as handle:
                    fqcn = yaml.safe_load(handle)[0]['ansible.builtin.import_playbook']
                source = _playbook_source(fqcn)
                assert all(variable in source or _role_documents(variable) for variable in variables), name
            if template['playbook'] in ACTING:
                confirm = [q for q in survey['spec'] if q['variable'] == 'cerniq_confirm']
                assert confirm and confirm[0]['default'] == 'false', '%s must act only when asked' % name

        _check_schedules(_objects(controller, 'schedules'), templates)


def _playbook_source(fqcn):
    with open(os.path.join(REPO, 'playbooks', *fqcn.split('.')[2:]) + '.yml') as handle:
        return handle.read()


def _role_documents(variable):
    with open(os.path.join(REPO, 'roles', 'cerniq', 'meta', 'argument_specs.yml')) as handle:
        return variable in yaml.safe_load(handle)['argument_specs']['main']['options']


def _check_schedules(schedules, templates):
    by_id = dict((t['id'], name) for name, t in templates.items())
    assert {by_id[s['unified_job_template']] for s in schedules.values()} >= {
        'CERNIQ - daily maintenance', 'CERNIQ - weekly maintenance', 'CERNIQ - index report', 'CERNIQ - capacity report'}
    local = tz.gettz('Europe/Bucharest')
    after = datetime.datetime(2026, 3, 2, 12, 0, tzinfo=local)      # a Monday
    expected = {
        'CERNIQ - daily maintenance 02:30': [(2026, 3, 3, 2, 30), (2026, 3, 4, 2, 30)],
        'CERNIQ - weekly maintenance Sunday 04:00': [(2026, 3, 8, 4, 0), (2026, 3, 15, 4, 0)],
        'CERNIQ - index report Monday 06:00': [(2026, 3, 9, 6, 0), (2026, 3, 16, 6, 0)],
        'CERNIQ - capacity report Monday 06:30': [(2026, 3, 9, 6, 30), (2026, 3, 16, 6, 30)],
        'CERNIQ - SLA breach report hourly': [(2026, 3, 2, 12, 5), (2026, 3, 2, 13, 5)],
        'CERNIQ - diagnose queues every 15 minutes': [(2026, 3, 2, 12, 15), (2026, 3, 2, 12, 30)],
    }
    assert set(schedules) == set(expected)
    for name, schedule in schedules.items():
        # AWX's own checks: a DTSTART with a time zone and one RRULE, never COUNT above 999
        assert schedule['rrule'].startswith('DTSTART;TZID=') and schedule['rrule'].count('RRULE:') == 1
        assert 'COUNT=' not in schedule['rrule']
        rule = dateutil_rrule.rrulestr(schedule['rrule'].replace(' RRULE:', '\nRRULE:'), forceset=True)
        first = rule.after(after)
        second = rule.after(first)
        assert [(t.year, t.month, t.day, t.hour, t.minute) for t in (first, second)] == expected[name], name
    hourly = schedules['CERNIQ - SLA breach report hourly']
    assert hourly['extra_data'] == {'cerniq_confirm': 'false'}     # the scheduled run only reports
