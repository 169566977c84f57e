/*
 * changeloop: send resolved incident. Outbound Business Rule on incident.
 *
 * @name       changeloop: send resolved incident
 * @table      incident
 * @when       after
 * @order      100
 * @insert     false
 * @update     true
 * @condition  current.state.changesTo('6') && current.correlation_display == 'changeloop'
 *
 * When someone resolves an incident that changeloop opened for a failed workflow, changeloop closes the loop:
 * the incident workflow records who resolved it and stops waiting.
 *
 * POST {x_changeloop.shim_url}/api/incidents/{number}/resolve
 * Authorization: Bearer {x_changeloop.incident_token}   (its own principal: scope incident:resolve)
 *
 * The JSON body has exactly these fields (the sandbox emulator sends the same set:
 * sandbox/outbound_rules.py):
 *   resolved_by, close_code, close_notes, correlation_id
 * resolved_by is the user_name of the incident's Resolved by user (or of the user who made this update);
 * correlation_id is the failed workflow's ID that changeloop wrote when it opened the incident.
 */
(function executeRule(current, previous /*null when async*/) {
    var shimUrl = gs.getProperty('x_changeloop.shim_url', '');
    var token = gs.getProperty('x_changeloop.incident_token', '');
    if (!shimUrl || !token) {
        gs.warn('changeloop: x_changeloop.shim_url or x_changeloop.incident_token is not set; ' +
            current.getValue('number') + ' was not sent');
        return;
    }
    var number = current.getValue('number') || '';

    var body = {};
    body.resolved_by = current.resolved_by.user_name.toString() || current.getValue('sys_updated_by') || '';
    body.close_code = current.getValue('close_code') || '';
    body.close_notes = current.getValue('close_notes') || '';
    body.correlation_id = current.getValue('correlation_id') || '';

    try {
        var request = new sn_ws.RESTMessageV2('changeloop shim', 'post');
        request.setEndpoint(shimUrl + '/api/incidents/' + encodeURIComponent(number) + '/resolve');
        request.setHttpMethod('POST');
        request.setRequestHeader('Content-Type', 'application/json');
        request.setRequestHeader('Authorization', 'Bearer ' + token);
        request.setRequestBody(JSON.stringify(body));
        request.executeAsync();
    } catch (e) {
        gs.error('changeloop: could not send the resolution of ' + number + ': ' + e.message);
    }
})(current, previous);
